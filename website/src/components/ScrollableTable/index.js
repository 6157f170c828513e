import React from 'react';
import {translate} from '@docusaurus/Translate';
import styles from './styles.module.css';

function textOf(node) {
  if (node == null || typeof node === 'boolean') return '';
  if (typeof node === 'string' || typeof node === 'number') return String(node);
  if (Array.isArray(node)) return node.map(textOf).join('');
  return textOf(node.props?.children);
}

/** The header row's text: a name that tells the tables of a page apart. */
function headerText(children) {
  const head = React.Children.toArray(children).find((child) => child?.type === 'thead' || child?.props?.mdxType === 'thead');
  const row = head ? React.Children.toArray(head.props.children)[0] : null;
  const cells = row ? React.Children.toArray(row.props.children).map((cell) => textOf(cell).trim()).filter(Boolean) : [];
  return cells.join(', ');
}

// Wide tables scroll sideways inside a focusable, named region, so keyboard users can scroll them too.
export default function ScrollableTable(props) {
  const label = translate({id: 'textbook.table.region', message: 'Table: {columns}'}, {columns: headerText(props.children)});
  return (
    <div className={styles.scroll} tabIndex={0} role="region" aria-label={label}>
      <table {...props} />
    </div>
  );
}
