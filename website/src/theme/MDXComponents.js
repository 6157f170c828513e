import MDXComponents from '@theme-original/MDXComponents';
import ScrollableTable from '@site/src/components/ScrollableTable';

// Wide tables scroll sideways inside a focusable region, so keyboard users can scroll them too.
export default {...MDXComponents, table: ScrollableTable};
