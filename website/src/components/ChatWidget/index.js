import React, {useCallback, useEffect, useRef, useState} from 'react';
import Link from '@docusaurus/Link';
import {useLocation} from '@docusaurus/router';
import useDocusaurusContext from '@docusaurus/useDocusaurusContext';
import {translate} from '@docusaurus/Translate';
import {ChatError, deleteSession, loadCapabilities, loadSession, sendFeedback, streamChat} from './api';
import styles from './styles.module.css';

const SESSION_KEY = 'textbook-chat:session-id';
const MAX_SELECTION_CHARS = 1000;
const MAX_QUESTION_CHARS = 2000;
const FOCUSABLE = 'a[href], button:not([disabled]), textarea:not([disabled]), input:not([disabled]), [tabindex]:not([tabindex="-1"])';

// Inline icons: an emoji would need a colour-emoji font the reader may not have.
const ICONS = {
  chat: 'M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z',
  up: 'M2 10h4v11H2zM8 21h9.5a2 2 0 0 0 2-1.6l1.4-7A2 2 0 0 0 19 10h-5.3l.8-4.2A1.8 1.8 0 0 0 12.7 4L8 9.5z',
  down: 'M2 3h4v11H2zM8 3h9.5a2 2 0 0 1 2 1.6l1.4 7A2 2 0 0 1 19 14h-5.3l.8 4.2a1.8 1.8 0 0 1-1.8 1.8L8 14.5z',
  close: 'M5.3 4 12 10.7 18.7 4 20 5.3 13.3 12l6.7 6.7-1.3 1.3-6.7-6.7L5.3 20 4 18.7l6.7-6.7L4 5.3z',
};

function Icon({name}) {
  return (
    <svg aria-hidden="true" focusable="false" width="18" height="18" viewBox="0 0 24 24" fill="currentColor">
      <path d={ICONS[name]} />
    </svg>
  );
}

const text = {
  open: () => translate({id: 'chat.open', message: 'Ask the textbook', description: 'The chat launcher button'}),
  title: () => translate({id: 'chat.title', message: 'Textbook assistant'}),
  close: () => translate({id: 'chat.close', message: 'Close the assistant'}),
  intro: () => translate({id: 'chat.intro', message: 'Ask a question about the book. Answers cite the sections they come from.'}),
  question: () => translate({id: 'chat.question.label', message: 'Your question'}),
  placeholder: () => translate({id: 'chat.question.placeholder', message: 'e.g. What is a ROS 2 action?'}),
  send: () => translate({id: 'chat.send', message: 'Send'}),
  stop: () => translate({id: 'chat.stop', message: 'Stop'}),
  newChat: () => translate({id: 'chat.new', message: 'New conversation'}),
  deleteChat: () => translate({id: 'chat.delete', message: 'Delete this conversation'}),
  confirmDelete: () => translate({id: 'chat.delete.confirm',
    message: 'Delete this conversation from the assistant\'s records? This cannot be undone.'}),
  deleted: () => translate({id: 'chat.delete.done', message: 'The conversation was deleted.'}),
  deleteFailed: () => translate({id: 'chat.delete.failed', message: 'The conversation could not be deleted. Please try again.'}),
  privacy: () => translate({id: 'chat.privacy', message: 'What is stored and for how long'}),
  you: () => translate({id: 'chat.you', message: 'You'}),
  assistant: () => translate({id: 'chat.assistant', message: 'Assistant'}),
  sources: () => translate({id: 'chat.sources', message: 'Sources'}),
  thinking: () => translate({id: 'chat.thinking', message: 'Searching the book…'}),
  stopped: () => translate({id: 'chat.stopped', message: 'Stopped.'}),
  helpful: () => translate({id: 'chat.feedback.up', message: 'Helpful'}),
  notHelpful: () => translate({id: 'chat.feedback.down', message: 'Not helpful'}),
  thanks: () => translate({id: 'chat.feedback.thanks', message: 'Thanks for the feedback.'}),
  feedbackFailed: () => translate({id: 'chat.feedback.failed', message: 'The feedback could not be sent.'}),
  chapterOnly: () => translate({id: 'chat.chapterOnly', message: 'This chapter only'}),
  askAboutThis: () => translate({id: 'chat.askAboutThis', message: 'Ask about this'}),
  aboutSelection: () => translate({id: 'chat.selection.label', message: 'About the selected passage:'}),
  removeSelection: () => translate({id: 'chat.selection.remove', message: 'Remove the passage'}),
  explainSelection: () => translate({id: 'chat.selection.defaultQuestion', message: 'Explain this passage.'}),
  rateLimited: (seconds) => translate(
    {id: 'chat.error.rateLimited', message: 'Too many questions right now. Please wait {seconds} seconds and try again.'},
    {seconds},
  ),
  rateLimitedNoWait: () => translate({id: 'chat.error.rateLimitedNoWait', message: 'Too many questions right now. Please wait a moment and try again.'}),
  unavailable: () => translate({id: 'chat.error.unavailable', message: 'The assistant is temporarily unavailable. Please try again in a minute.'}),
  network: () => translate({id: 'chat.error.network', message: 'Could not reach the assistant. Check your internet connection and try again.'}),
  timeout: () => translate({id: 'chat.error.timeout', message: 'The assistant took too long to answer. Please try again.'}),
  failed: () => translate({id: 'chat.error.failed', message: 'The answer could not be completed. Please try again.'}),
};

function errorMessage(error) {
  switch (error.kind) {
    case 'rate_limited':
      return error.retryAfterS != null ? text.rateLimited(error.retryAfterS) : text.rateLimitedNoWait();
    case 'unavailable':
      return text.unavailable();
    case 'network':
      return text.network();
    case 'timeout':
      return text.timeout();
    case 'cancelled':
      return text.stopped();
    default:
      return text.failed();
  }
}

/** The cited page in the reader's locale: drop the locale prefix the index stored; <Link> adds the site's own. */
export function localizedSourcePath(url, locales) {
  const match = url.match(/^\/([a-z]{2}(?:-[A-Za-z]+)?)(\/.*)$/);
  if (match && locales.includes(match[1])) return match[2];
  return url;
}

/** The doc id of the page being read (/docs/<id> under the site's base URL), or null off the docs. */
function currentChapter(pathname, baseUrl) {
  const rest = pathname.startsWith(baseUrl) ? pathname.slice(baseUrl.length) : pathname.replace(/^\//, '');
  const match = rest.match(/^docs\/([^/?#]+)/);
  return match ? decodeURIComponent(match[1]) : null;
}

/** The page as the index names it (/docs/<id>, /ur/docs/<id>): no base path, whatever the host serves under. */
function indexedPagePath(chapter, locale, defaultLocale) {
  return `${locale === defaultLocale ? '' : `/${locale}`}/docs/${chapter}`;
}

function readStoredSession() {
  try {
    return window.localStorage.getItem(SESSION_KEY);
  } catch {
    return null;
  }
}

function storeSession(sessionId) {
  try {
    if (sessionId) window.localStorage.setItem(SESSION_KEY, sessionId);
    else window.localStorage.removeItem(SESSION_KEY);
  } catch {
    // private mode: the conversation lasts as long as the page
  }
}

function uniqueSources(sources) {
  const seen = new Set();
  return (sources || []).filter((source) => {
    if (seen.has(source.url)) return false;
    seen.add(source.url);
    return true;
  });
}

// Answers quote the book's Markdown: its **bold**, *emphasis* and `code` are shown as such. React escapes every
// piece, so an answer can never inject markup; anything else (links, HTML) stays literal text.
const INLINE_MARKDOWN = /(\*\*[^*\n]+\*\*|`[^`\n]+`|\*[^*\s][^*\n]*\*)/;

function InlineMarkdown({text: answer}) {
  return answer.split(INLINE_MARKDOWN).map((piece, i) => {
    if (i % 2 === 0) return piece;
    if (piece.startsWith('**')) return <strong key={i}><InlineMarkdown text={piece.slice(2, -2)} /></strong>;
    if (piece.startsWith('`')) return <code key={i}>{piece.slice(1, -1)}</code>;
    return <em key={i}>{piece.slice(1, -1)}</em>;
  });
}

function SourceList({sources, locales}) {
  if (!sources?.length) return null;
  return (
    <div className={styles.sources}>
      <span className={styles.sourcesTitle}>{text.sources()}</span>
      <ol>
        {uniqueSources(sources).map((source) => (
          <li key={source.url}>
            <Link to={localizedSourcePath(source.url, locales)} data-testid="chat-source">
              {source.heading && source.heading !== source.title ? `${source.title}: ${source.heading}` : source.title}
            </Link>
          </li>
        ))}
      </ol>
    </div>
  );
}

function Feedback({message, apiUrl, onRated}) {
  const [state, setState] = useState('idle');
  if (!message.requestId || message.status !== 'done') return null;
  const rate = async (rating) => {
    setState('sending');
    try {
      await sendFeedback({apiUrl, requestId: message.requestId, rating});
      onRated(rating);
      setState('sent');
    } catch {
      setState('failed');
    }
  };
  return (
    <div className={styles.feedback}>
      <button type="button" className={styles.iconButton} aria-label={text.helpful()} title={text.helpful()}
        aria-pressed={message.rating === 1} disabled={state === 'sending'} onClick={() => rate(1)}>
        <Icon name="up" />
      </button>
      <button type="button" className={styles.iconButton} aria-label={text.notHelpful()} title={text.notHelpful()}
        aria-pressed={message.rating === -1} disabled={state === 'sending'} onClick={() => rate(-1)}>
        <Icon name="down" />
      </button>
      <span role="status" className={styles.feedbackStatus}>
        {state === 'sent' ? text.thanks() : state === 'failed' ? text.feedbackFailed() : ''}
      </span>
    </div>
  );
}

function SelectionOffer({onAsk, panelRef}) {
  const [offer, setOffer] = useState(null);
  useEffect(() => {
    const update = () => {
      const selection = window.getSelection();
      const selected = selection && !selection.isCollapsed ? selection.toString().trim() : '';
      if (selected.length < 3 || selection.rangeCount === 0) {
        setOffer(null);
        return;
      }
      const range = selection.getRangeAt(0);
      const container = range.commonAncestorContainer;
      const element = container.nodeType === 1 ? container : container.parentElement;
      if (!element || panelRef.current?.contains(element) || !element.closest('main, article')) {
        setOffer(null);
        return;
      }
      const rect = range.getBoundingClientRect();
      const top = Math.min(Math.max(rect.bottom + 8, 8), window.innerHeight - 48); // on screen even for a long selection
      const left = Math.min(Math.max(rect.left + rect.width / 2, 80), window.innerWidth - 80);
      setOffer({text: selected.slice(0, MAX_SELECTION_CHARS), top, left});
    };
    const onSelectionChange = () => {
      const selection = window.getSelection();
      if (!selection || selection.isCollapsed) setOffer(null);
    };
    document.addEventListener('mouseup', update);
    document.addEventListener('keyup', update);
    document.addEventListener('selectionchange', onSelectionChange);
    return () => {
      document.removeEventListener('mouseup', update);
      document.removeEventListener('keyup', update);
      document.removeEventListener('selectionchange', onSelectionChange);
    };
  }, [panelRef]);
  if (!offer) return null;
  return (
    <button type="button" className={styles.selectionOffer} style={{top: offer.top, left: offer.left}}
      onMouseDown={(event) => event.preventDefault() /* keep the selection */}
      onClick={() => {
        onAsk(offer.text);
        setOffer(null);
      }}>
      {text.askAboutThis()}
    </button>
  );
}

export default function ChatWidget() {
  const {siteConfig, i18n} = useDocusaurusContext();
  const apiUrl = siteConfig.customFields.apiUrl;
  const timeoutMs = siteConfig.customFields.chatTimeoutMs;
  const locale = i18n.currentLocale;
  const {pathname} = useLocation();
  const chapter = currentChapter(pathname, siteConfig.baseUrl);

  const [open, setOpen] = useState(false);
  const [messages, setMessages] = useState([]);
  const [question, setQuestion] = useState('');
  const [busy, setBusy] = useState(false);
  const [notice, setNotice] = useState(''); // about the conversation itself (deleted or not), never an answer's error
  const [blockedUntil, setBlockedUntil] = useState(0);
  const [selection, setSelection] = useState(null);
  const [chapterOnly, setChapterOnly] = useState(false);
  const [capabilities, setCapabilities] = useState({selection: false, chapter: false});
  const [historyLoaded, setHistoryLoaded] = useState(false);

  const launcherRef = useRef(null);
  const panelRef = useRef(null);
  const inputRef = useRef(null);
  const logRef = useRef(null);
  const abortRef = useRef(null);

  useEffect(() => {
    let live = true;
    loadCapabilities({apiUrl}).then((found) => live && setCapabilities(found));
    return () => {
      live = false;
    };
  }, [apiUrl]);

  // A stored session: show its turns when the panel first opens on this page load.
  useEffect(() => {
    if (!open || historyLoaded) return;
    setHistoryLoaded(true);
    const sessionId = readStoredSession();
    if (!sessionId || messages.length) return;
    loadSession({apiUrl, sessionId})
      .then((session) => {
        if (!session) {
          storeSession(null);
          return;
        }
        setMessages((current) => (current.length ? current : session.messages.map((m) => ({
          role: m.role, text: m.content, sources: m.sources, requestId: m.request_id, status: 'done',
        }))));
      })
      .catch(() => {}); // the history is a convenience; asking still works
  }, [open, historyLoaded, apiUrl, messages.length]);

  useEffect(() => {
    if (open) inputRef.current?.focus();
  }, [open]);

  useEffect(() => {
    logRef.current?.scrollTo?.({top: logRef.current.scrollHeight});
  }, [messages]);

  useEffect(() => {
    if (!blockedUntil) return undefined;
    const timer = setTimeout(() => setBlockedUntil(0), Math.max(0, blockedUntil - Date.now()));
    return () => clearTimeout(timer);
  }, [blockedUntil]);

  const close = useCallback(() => {
    setOpen(false);
    launcherRef.current?.focus();
  }, []);

  const onPanelKeyDown = (event) => {
    if (event.key === 'Escape') {
      event.stopPropagation();
      close();
      return;
    }
    if (event.key !== 'Tab') return;
    const focusable = [...panelRef.current.querySelectorAll(FOCUSABLE)].filter((el) => el.offsetParent !== null);
    if (!focusable.length) return;
    const first = focusable[0];
    const last = focusable[focusable.length - 1];
    if (event.shiftKey && (document.activeElement === first || !panelRef.current.contains(document.activeElement))) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  };

  // Focus that leaves the open panel (a click on the page, a screen reader jump) is brought back.
  useEffect(() => {
    if (!open) return undefined;
    const onFocusIn = (event) => {
      if (panelRef.current && !panelRef.current.contains(event.target) && event.target !== launcherRef.current) {
        inputRef.current?.focus();
      }
    };
    document.addEventListener('focusin', onFocusIn);
    return () => document.removeEventListener('focusin', onFocusIn);
  }, [open]);

  const updateLast = (change) => setMessages((current) => {
    const next = current.slice();
    next[next.length - 1] = {...next[next.length - 1], ...change(next[next.length - 1])};
    return next;
  });

  const ask = async (event) => {
    event?.preventDefault();
    const typed = question.trim();
    if (busy || Date.now() < blockedUntil || (!typed && !selection)) return;
    const asked = typed || text.explainSelection();
    const body = {question: asked, locale};
    if (selection) {
      if (capabilities.selection && selection.pageUrl) {
        body.selection = {text: selection.text, page_url: selection.pageUrl};
      } else {
        // Off the chapters, or an API without the `selection` field (it forbids unknown fields): quote the passage.
        const room = MAX_QUESTION_CHARS - asked.length - 8;
        body.question = `"${selection.text.slice(0, Math.max(0, room))}"\n\n${asked}`;
      }
    }
    if (chapterOnly && chapter && capabilities.chapter) body.chapter = chapter;
    setQuestion('');
    setSelection(null);
    setNotice('');
    setBusy(true);
    setMessages((current) => [
      ...current,
      {role: 'user', text: asked, quote: selection?.text},
      {role: 'assistant', text: '', sources: [], status: 'streaming'},
    ]);
    const controller = new AbortController();
    abortRef.current = controller;
    const run = (sessionId) => streamChat({
      apiUrl, timeoutMs, signal: controller.signal,
      body: sessionId ? {...body, session_id: sessionId} : body,
      onEvent: (name, data) => {
        if (name === 'start') updateLast(() => ({requestId: data.request_id}));
        else if (name === 'delta') updateLast((last) => ({text: last.text + data.text}));
      },
    });
    try {
      let final;
      try {
        final = await run(readStoredSession());
      } catch (error) {
        if (!(error instanceof ChatError && error.kind === 'not_found' && readStoredSession())) throw error;
        storeSession(null); // the service forgot the session (a reset database): start a new one
        final = await run(null);
      }
      storeSession(final.session_id);
      updateLast(() => ({text: final.answer, sources: final.sources, requestId: final.request_id, status: 'done'}));
    } catch (error) {
      const chatError = error instanceof ChatError ? error : new ChatError('network');
      if (chatError.kind === 'rate_limited') setBlockedUntil(Date.now() + 1000 * (chatError.retryAfterS ?? 5));
      updateLast((last) => ({status: chatError.kind === 'cancelled' ? 'cancelled' : 'error', error: errorMessage(chatError),
        text: last.text}));
    } finally {
      abortRef.current = null;
      setBusy(false);
    }
  };

  const askAboutSelection = (selected) => {
    setSelection({text: selected, pageUrl: chapter ? indexedPagePath(chapter, locale, i18n.defaultLocale) : null});
    setOpen(true);
    setTimeout(() => inputRef.current?.focus(), 0);
  };

  const newConversation = () => {
    abortRef.current?.abort();
    storeSession(null);
    setMessages([]);
    setNotice('');
    inputRef.current?.focus();
  };

  const deleteConversation = async () => {
    if (!window.confirm(text.confirmDelete())) return;
    abortRef.current?.abort();
    const sessionId = readStoredSession();
    try {
      if (sessionId) await deleteSession({apiUrl, sessionId});
    } catch {
      setNotice(text.deleteFailed());
      return;
    }
    storeSession(null);
    setMessages([]);
    setNotice(text.deleted());
    inputRef.current?.focus();
  };

  const blocked = Date.now() < blockedUntil;
  return (
    <>
      <SelectionOffer onAsk={askAboutSelection} panelRef={panelRef} />
      <button ref={launcherRef} type="button" className={styles.launcher} aria-haspopup="dialog" aria-expanded={open}
        aria-controls="textbook-chat-panel" onClick={() => (open ? close() : setOpen(true))}>
        <Icon name="chat" />
        <span>{text.open()}</span>
      </button>
      {open && (
        <section id="textbook-chat-panel" ref={panelRef} className={styles.panel} role="dialog" aria-modal="true"
          aria-labelledby="textbook-chat-title" onKeyDown={onPanelKeyDown}>
          <header className={styles.header}>
            <h2 id="textbook-chat-title" className={styles.title}>{text.title()}</h2>
            <button type="button" className={styles.textButton} onClick={newConversation} disabled={!messages.length}>
              {text.newChat()}
            </button>
            <button type="button" className={styles.textButton} onClick={deleteConversation} disabled={!messages.length || busy}
              data-testid="chat-delete">
              {text.deleteChat()}
            </button>
            <button type="button" className={styles.iconButton} aria-label={text.close()} title={text.close()} onClick={close}>
              <Icon name="close" />
            </button>
          </header>
          <div ref={logRef} className={styles.log} role="log" aria-live="polite" aria-busy={busy} aria-relevant="additions text"
            tabIndex={0} aria-label={text.title()}>
            {!messages.length && (
              <p className={styles.intro}>
                {text.intro()} <Link to="/privacy" data-testid="chat-privacy">{text.privacy()}</Link>
              </p>
            )}
            {messages.map((message, index) => (
              <div key={index} className={message.role === 'user' ? styles.user : styles.assistant}
                data-testid={message.role === 'user' ? 'chat-question' : 'chat-answer'} data-status={message.status}>
                <span className={styles.visuallyHidden}>{message.role === 'user' ? text.you() : text.assistant()}: </span>
                {message.quote && <blockquote className={styles.quote}>{message.quote}</blockquote>}
                {message.role === 'assistant' && message.status === 'streaming' && !message.text && (
                  <span className={styles.thinking}>{text.thinking()}</span>
                )}
                <div className={styles.text} data-testid="chat-text">
                  {message.role === 'assistant' ? <InlineMarkdown text={message.text} /> : message.text}
                </div>
                {/* shown once, here: the log is aria-live, so screen readers hear it once too */}
                {message.error && <p className={styles.messageError} data-testid="chat-error">{message.error}</p>}
                {message.role === 'assistant' && <SourceList sources={message.sources} locales={i18n.locales} />}
                {message.role === 'assistant' && (
                  <Feedback message={message} apiUrl={apiUrl} onRated={(rating) => setMessages((current) => current.map(
                    (m, i) => (i === index ? {...m, rating} : m)))} />
                )}
              </div>
            ))}
          </div>
          <p role="status" className={notice ? styles.notice : styles.visuallyHidden} data-testid="chat-notice">{notice}</p>
          <form className={styles.form} onSubmit={ask}>
            {selection && (
              <div className={styles.selection}>
                <span>{text.aboutSelection()}</span>
                <blockquote className={styles.quote}>{selection.text}</blockquote>
                <button type="button" className={styles.textButton} onClick={() => setSelection(null)}>{text.removeSelection()}</button>
              </div>
            )}
            {chapter && capabilities.chapter && (
              <label className={styles.toggle}>
                <input type="checkbox" checked={chapterOnly} onChange={(e) => setChapterOnly(e.target.checked)} />
                {text.chapterOnly()}
              </label>
            )}
            <label htmlFor="textbook-chat-question" className={styles.visuallyHidden}>{text.question()}</label>
            <textarea id="textbook-chat-question" ref={inputRef} className={styles.input} rows={2} maxLength={MAX_QUESTION_CHARS}
              value={question} placeholder={selection ? text.explainSelection() : text.placeholder()}
              onChange={(e) => setQuestion(e.target.value)}
              onKeyDown={(e) => {
                if (e.key === 'Enter' && !e.shiftKey && !e.nativeEvent.isComposing) ask(e);
              }} />
            <div className={styles.actions}>
              {busy ? (
                // keys: two different buttons, so the colours never transition from one to the other
                <button key="stop" type="button" className="button button--secondary" onClick={() => abortRef.current?.abort()}>
                  {text.stop()}
                </button>
              ) : (
                <button key="send" type="submit" className="button button--primary" disabled={blocked}>{text.send()}</button>
              )}
            </div>
          </form>
        </section>
      )}
    </>
  );
}
