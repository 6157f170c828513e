import React from 'react';
import ChatWidget from '@site/src/components/ChatWidget';

// Root wraps every page and never unmounts, so the conversation survives client-side navigation.
export default function Root({children}) {
  return (
    <>
      {children}
      <ChatWidget />
    </>
  );
}
