import React from 'react';
import Link from '@docusaurus/Link';
import Translate, {translate} from '@docusaurus/Translate';
import Layout from '@theme/Layout';
import Heading from '@theme/Heading';
import styles from './index.module.css';

// The chapters in reading order (each doc's sidebar_position). Links are checked at build time.
const CHAPTERS = [
  {id: 'intro-to-physical-ai', title: translate({id: 'home.chapter.intro-to-physical-ai', message: 'Introduction to Physical AI'})},
  {id: 'ros2-fundamentals', title: translate({id: 'home.chapter.ros2-fundamentals', message: 'ROS 2 Fundamentals'})},
  {id: 'simulation-and-digital-twins', title: translate({id: 'home.chapter.simulation-and-digital-twins', message: 'Simulation and Digital Twins'})},
  {id: 'perception-and-sensor-fusion', title: translate({id: 'home.chapter.perception-and-sensor-fusion', message: 'Perception and Sensor Fusion'})},
  {id: 'kinematics-and-locomotion', title: translate({id: 'home.chapter.kinematics-and-locomotion', message: 'Kinematics, Dynamics and Bipedal Locomotion'})},
  {id: 'vision-language-action', title: translate({id: 'home.chapter.vision-language-action', message: 'Vision-Language-Action Models and Conversational Robots'})},
];

export default function Home() {
  const title = translate({id: 'home.title', message: 'Physical AI & Humanoid Robotics'});
  return (
    <Layout title={title} description={translate({id: 'home.description', message: 'A textbook on robots that sense, think and act in the physical world, with an assistant that answers from the book.'})}>
      <header className={styles.hero}>
        <div className="container">
          <Heading as="h1" className={styles.title}>{title}</Heading>
          <p className={styles.tagline}>
            <Translate id="home.tagline">A textbook on robots that sense, think and act in the physical world.</Translate>
          </p>
          <Link className="button button--primary button--lg" to="/docs/intro-to-physical-ai">
            <Translate id="home.start">Start reading</Translate>
          </Link>
        </div>
      </header>
      <main className="container margin-vert--lg">
        <Heading as="h2"><Translate id="home.chapters">Chapters</Translate></Heading>
        <ol className={styles.chapters}>
          {CHAPTERS.map((chapter) => (
            <li key={chapter.id}><Link to={`/docs/${chapter.id}`}>{chapter.title}</Link></li>
          ))}
        </ol>
        <p>
          <Translate id="home.assistant">
            Questions while you read? Open the assistant with the button at the bottom of any page, or select a passage and choose "Ask about this". Answers come from the book and link to the sections they cite.
          </Translate>
        </p>
      </main>
    </Layout>
  );
}
