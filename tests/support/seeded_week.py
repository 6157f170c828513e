"""A week of chat traffic with known content gaps, for the content-gaps report.

30 questions about Arduino (the book never mentions it) answered "not covered", 10 about 3D-printing robot parts
answered but rated thumbs-down, scattered one-off questions nobody else asked, and answered questions that cite
the book. The report must find exactly two topics: Arduino (30) and 3D printing (10)."""

from __future__ import annotations

ARDUINO = [
    f"{opening} {subject}"
    for subject in ("an Arduino Uno to drive the servos of a robot arm?", "Arduino code to read an ultrasonic sensor?",
                    "an Arduino sketch that controls two DC motors with an H-bridge?",
                    "an Arduino Mega talk to ROS over serial?", "an Arduino board for PWM motor control?",
                    "the Arduino IDE to upload firmware to my robot's microcontroller?",
                    "an Arduino Nano to read a rotary encoder on a wheel?",
                    "Arduino interrupts to count wheel encoder ticks?",
                    "an Arduino to blink an LED when the robot's battery is low?",
                    "Arduino's Servo library to sweep a servo motor?")
    for opening in ("How do I use", "Can you explain how to set up", "What is the best way to program")
]
PRINTING_3D = [
    "What infill should I use when 3D printing robot leg parts?",
    "Which filament is strongest for 3D printed robot gears, PLA or PETG?",
    "How do I 3D print a gripper for my robot arm?",
    "What layer height is best for 3D printing robot joints?",
    "How do I design 3D printable brackets for servo motors?",
    "Should I 3D print my humanoid's chassis in ABS or nylon?",
    "How do I avoid warping when 3D printing large robot body panels?",
    "Which 3D printer settings make strong robot arm links?",
    "How do I 3D print a wheel hub that fits a motor shaft?",
    "How strong are 3D printed PLA parts for a walking robot?",
]
ONE_OFFS = [
    "What is the capital of Australia?",
    "Can you recommend a good pizza recipe?",
    "Who won the football world cup in 2010?",
    "How do I file my income tax return?",
    "What is the best time to visit Lahore?",
]
ROS = ("/docs/ros2-fundamentals", "ROS 2 Fundamentals")
KINEMATICS = ("/docs/kinematics-and-locomotion", "Kinematics and Locomotion")
PERCEPTION = ("/docs/perception-and-sensor-fusion", "Perception and Sensor Fusion")
# (question, locale, cited page, title, heading): each asked four times in the week, answered from the book.
ANSWERED = [
    ("What is a ROS 2 action?", "en", *ROS, "Actions"),
    ("How do ROS 2 topics differ from services?", "en", *ROS, "Topics"),
    ("How does a Kalman filter fuse odometry with LiDAR?", "en", *PERCEPTION, "Kalman filter"),
    ("What sensors does a humanoid robot use to balance?", "en", *PERCEPTION, "IMU"),
    ("What is the zero moment point?", "en", *KINEMATICS, "ZMP"),
    ("How is inverse kinematics solved for a robot arm?", "en", *KINEMATICS, "Inverse kinematics"),
    ("How are the servo motors of a humanoid's joints controlled?", "en", *KINEMATICS, "Joint control"),
    ("ZMP کیا ہے؟", "ur", "/ur/docs/kinematics-and-locomotion", "کائنیمیٹکس", "ZMP"),
]
