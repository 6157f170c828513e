"""Citation verification as pure functions: markers and sources agree, unsupported claims go."""

from __future__ import annotations

from app.rag.citations import support, verify_citations

ZMP = ("The zero moment point (ZMP) is the point on the ground where the net moment of gravity and inertia "
       "forces is zero. It must stay inside the support polygon for the robot not to tip over.")
ROS = "A ROS 2 publisher sends messages on a topic; subscribers receive them according to their QoS settings."
KALMAN = "A Kalman filter predicts the state, then corrects it with a measurement weighted by the Kalman gain."
SOURCES = [ZMP, ROS, KALMAN]


def test_consistent_answer_is_left_alone():
    answer = "The ZMP must stay inside the support polygon [1]. A publisher sends messages on a topic [2]."
    result = verify_citations(answer, SOURCES)
    assert result.text == answer and result.source_order == [0, 1] and result.verified
    assert result.repairs == {"unused": 1}


def test_phantom_markers_are_removed():
    result = verify_citations("The ZMP must stay inside the support polygon [1][4]. Publishers send messages [9].",
                              SOURCES)
    assert "[4]" not in result.text and "[9]" not in result.text
    assert result.repairs["phantom"] == 2 and result.source_order[0] == 0


def test_markers_are_renumbered_in_order_of_first_use_and_unused_sources_dropped():
    answer = "A Kalman filter corrects a prediction with a measurement [3]. The ZMP must stay inside the support polygon [1]."
    result = verify_citations(answer, SOURCES)
    assert result.text == ("A Kalman filter corrects a prediction with a measurement [1]. "
                           "The ZMP must stay inside the support polygon [2].")
    assert result.source_order == [2, 0] and result.repairs["renumbered"] == 1 and result.repairs["unused"] == 1


def test_unsupported_claim_is_dropped_and_a_miscited_one_repointed():
    answer = ("The Eiffel Tower is repainted bronze every seven years [1]. "
              "A Kalman filter corrects predictions with measurements weighted by the Kalman gain [2].")
    result = verify_citations(answer, SOURCES)
    assert "Eiffel" not in result.text
    assert result.text == "A Kalman filter corrects predictions with measurements weighted by the Kalman gain [1]."
    assert result.source_order == [2] and result.repairs["unsupported"] == 1 and result.repairs["miscited"] == 1


def test_marker_after_the_full_stop_and_marker_lists_belong_to_their_sentence():
    result = verify_citations("The ZMP must stay inside the support polygon. [1, 2] Publishers send messages on topics. [2]",
                              SOURCES)
    assert result.text == "The ZMP must stay inside the support polygon [1]. Publishers send messages on topics [2]."


def test_nothing_supported_leaves_nothing_verified():
    result = verify_citations("Bread needs flour, water, salt and patience [1].", SOURCES)
    assert result.text == "" and not result.verified and result.repairs["unsupported"] == 1


def test_code_blocks_and_short_connectives_are_kept_and_urdu_is_checked():
    answer = "Here is how:\n```python\nrclpy.init()\n```\nA publisher sends messages on a topic [2]."
    result = verify_citations(answer, SOURCES)
    assert "```python\nrclpy.init()\n```" in result.text and result.text.startswith("Here is how:")
    urdu = ["کالمن فلٹر پیش گوئی کرتا ہے اور پھر پیمائش سے درستی کرتا ہے۔"]
    assert verify_citations("کالمن فلٹر پیمائش سے درستی کرتا ہے [1]۔", urdu).source_order == [0]
    assert support("کالمن فلٹر پیمائش سے درستی کرتا ہے", urdu[0]) == 1.0


def test_without_support_checks_only_the_numbering_is_repaired():
    result = verify_citations("Anything at all is claimed here [2]. More claims about nothing [2].", SOURCES,
                              check_support=False)
    assert result.text == "Anything at all is claimed here [1]. More claims about nothing [1]." and result.source_order == [1]
