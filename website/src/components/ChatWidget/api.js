// Talking to the query service: the SSE chat stream, feedback, sessions, and what the API accepts.

export class ChatError extends Error {
  /** kind: 'rate_limited' | 'unavailable' | 'network' | 'timeout' | 'cancelled' | 'not_found' | 'stream' | 'http' */
  constructor(kind, {status = null, retryAfterS = null, detail = ''} = {}) {
    super(detail || kind);
    this.kind = kind;
    this.status = status;
    this.retryAfterS = retryAfterS;
  }
}

/** Retry-After is either delay-seconds or an HTTP date. */
export function parseRetryAfter(value, now = Date.now()) {
  if (!value) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return null;
  return Math.max(0, Math.ceil((date - now) / 1000));
}

async function errorFromResponse(response) {
  let detail = '';
  try {
    detail = (await response.json()).detail || '';
  } catch {
    // not JSON: keep the status only
  }
  const retryAfterS = parseRetryAfter(response.headers.get('retry-after'));
  const options = {status: response.status, retryAfterS, detail};
  if (response.status === 429) return new ChatError('rate_limited', options);
  if (response.status === 503 || response.status === 502 || response.status === 504) return new ChatError('unavailable', options);
  if (response.status === 404) return new ChatError('not_found', options);
  return new ChatError('http', options);
}

/** Split a Server-Sent Events buffer into complete events; returns [events, rest]. */
export function parseSseEvents(buffer) {
  const events = [];
  const blocks = buffer.replace(/\r\n/g, '\n').split('\n\n');
  const rest = blocks.pop();
  for (const block of blocks) {
    let event = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (data.length) events.push({event, data: JSON.parse(data.join('\n'))});
  }
  return [events, rest];
}

/**
 * POST /v1/chat/stream and call onEvent(name, data) for start, delta, final. Rejects with a ChatError.
 * The request is aborted by `signal` (the reader's Stop) or after `timeoutMs` without a byte from the server.
 */
export async function streamChat({apiUrl, body, signal, timeoutMs, onEvent}) {
  const controller = new AbortController();
  let timedOut = false;
  let timer = null;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
  };
  const cancel = () => controller.abort();
  signal?.addEventListener('abort', cancel);
  const failure = (error) => {
    if (error instanceof ChatError) return error;
    if (timedOut) return new ChatError('timeout');
    if (signal?.aborted) return new ChatError('cancelled');
    return new ChatError('network', {detail: String(error)});
  };
  try {
    arm();
    let response;
    try {
      response = await fetch(`${apiUrl}/v1/chat/stream`, {
        method: 'POST',
        headers: {'content-type': 'application/json', accept: 'text/event-stream'},
        body: JSON.stringify(body),
        signal: controller.signal,
      });
    } catch (error) {
      throw failure(error);
    }
    if (!response.ok) throw await errorFromResponse(response);
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    let final = null;
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (error) {
        throw failure(error);
      }
      if (chunk.done) break;
      arm();
      buffer += decoder.decode(chunk.value, {stream: true});
      const [events, rest] = parseSseEvents(buffer);
      buffer = rest;
      for (const {event, data} of events) {
        if (event === 'error') throw new ChatError('stream', {detail: data.detail || '', status: 200});
        if (event === 'final') final = data;
        onEvent(event, data);
      }
    }
    if (!final) throw new ChatError('stream', {detail: 'the stream ended without an answer'});
    return final;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', cancel);
  }
}

export async function sendFeedback({apiUrl, requestId, rating}) {
  const response = await fetch(`${apiUrl}/v1/feedback`, {
    method: 'POST',
    headers: {'content-type': 'application/json'},
    body: JSON.stringify({request_id: requestId, rating}),
  });
  if (!response.ok) throw await errorFromResponse(response);
  return response.json();
}

/** The stored conversation, or null when the service no longer knows the session. */
export async function loadSession({apiUrl, sessionId}) {
  const response = await fetch(`${apiUrl}/v1/sessions/${encodeURIComponent(sessionId)}`);
  if (response.status === 404) return null;
  if (!response.ok) throw await errorFromResponse(response);
  return response.json();
}

/** Erase the conversation on the service. A session the service no longer knows is already gone: no error. */
export async function deleteSession({apiUrl, sessionId}) {
  const response = await fetch(`${apiUrl}/v1/sessions/${encodeURIComponent(sessionId)}`, {method: 'DELETE'});
  if (response.status === 404 || response.ok) return;
  throw await errorFromResponse(response);
}

/**
 * Which optional ChatRequest fields this service accepts (`selection`, `chapter`), read from its OpenAPI
 * schema: the request model forbids unknown fields, so sending one to an older service would be a 422.
 */
export async function loadCapabilities({apiUrl}) {
  try {
    const response = await fetch(`${apiUrl}/openapi.json`);
    if (!response.ok) return {selection: false, chapter: false};
    const spec = await response.json();
    const properties = spec?.components?.schemas?.ChatRequest?.properties || {};
    return {selection: 'selection' in properties, chapter: 'chapter' in properties};
  } catch {
    return {selection: false, chapter: false};
  }
}
