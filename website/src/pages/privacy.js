import React from 'react';
import Layout from '@theme/Layout';
import Heading from '@theme/Heading';
import {translate} from '@docusaurus/Translate';

// What the assistant stores, for how long, and how to erase it. The numbers are the service's defaults
// (QUERY_TEXT_RETENTION_DAYS, SESSION_RETENTION_DAYS, the backup retention): README, "Readers' data".
const t = (id, message) => translate({id: `privacy.${id}`, message});

export default function Privacy() {
  const rows = [
    [t('row.conversation', 'Your conversation (questions and answers)'),
      t('row.conversation.why', 'So a follow-up question continues it, on any page'),
      t('row.conversation.kept', 'Until you delete it, or 90 days after your last question')],
    [t('row.question', 'Each question, next to its numbers (time taken, cost, whether the book covered it)'),
      t('row.question.why', 'To find what the book does not answer yet, and improve it'),
      t('row.question.kept', 'The text for 30 days; the numbers, without any text, are kept')],
    [t('row.feedback', 'A thumbs up or down, and its comment'),
      t('row.feedback.why', 'To improve the answers'),
      t('row.feedback.kept', 'The rating is kept; the comment for 90 days')],
  ];
  return (
    <Layout title={t('title', 'Privacy')}
      description={t('description', 'What the textbook assistant stores about your questions, for how long, and how to erase it.')}>
      <main className="container margin-vert--lg">
        <Heading as="h1">{t('title', 'Privacy')}</Heading>
        <p>{t('intro', 'The textbook assistant needs no account and asks for no name or e-mail address. To answer, it stores:')}</p>
        <table>
          <thead>
            <tr><th>{t('head.what', 'What')}</th><th>{t('head.why', 'Why')}</th><th>{t('head.kept', 'For how long')}</th></tr>
          </thead>
          <tbody>
            {rows.map(([what, why, kept]) => <tr key={what}><td>{what}</td><td>{why}</td><td>{kept}</td></tr>)}
          </tbody>
        </table>
        <p>{t('browser', 'Your browser keeps only the conversation\'s random identifier (in its local storage), not the conversation itself.')}</p>
        <Heading as="h2">{t('erase.title', 'Erase a conversation')}</Heading>
        <p>{t('erase', 'Open the assistant and press "Delete this conversation". Its questions and answers are deleted at once, the question text is removed from the records and any feedback comments are cleared. Only the numbers stay, without any text.')}</p>
        <Heading as="h2">{t('backups.title', 'Backups')}</Heading>
        <p>{t('backups', 'The database is backed up every night and old backups are deleted on a schedule. A copy of an erased conversation can remain in a backup taken before you erased it for at most 153 days; backups are only read to recover from a failure.')}</p>
      </main>
    </Layout>
  );
}
