// What every object of the API shares: Ably-style errors and an event emitter.

/** An Ably-style error: `code`, `statusCode`, `message`, and the `cause` when there is one. */
export class ErrorInfo extends Error {
  constructor(message, code, statusCode, cause) {
    super(message);
    this.name = 'ErrorInfo';
    this.code = code;
    this.statusCode = statusCode;
    if (cause !== undefined) this.cause = cause;
  }

  static from(error) {
    if (error instanceof ErrorInfo) return error;
    return new ErrorInfo(error?.message ?? String(error), error?.code ?? 50000, error?.statusCode ?? 500);
  }
}

export const badArgs = (message) => new ErrorInfo(message, 40000, 400);

/** A REST read: `[body, response]`; a failure (no answer, or an error's) as an ErrorInfo. Given
 * up after `timeout` ms (Ably's `httpRequestTimeout`, 10 s by default). */
export async function restGet(url, headers, timeout) {
  let response;
  try {
    response = await fetch(url, { headers, signal: AbortSignal.timeout(timeout ?? 1e4) });
  } catch (cause) {
    throw new ErrorInfo(`unable to reach the hub: ${cause?.message ?? cause}`, 80000, 500, cause);
  }
  const body = await response.json().catch(() => null);
  if (response.ok) return [body, response];
  const e = body?.error ?? {};
  throw new ErrorInfo(e.message ?? `request failed with status ${response.status}`, e.code ?? 50000, e.statusCode ?? response.status);
}

/** Ably's EventEmitter: `on([event | events], listener)`, `once`, `off` in all their forms. */
export class EventEmitter {
  #any = new Set();
  #byEvent = new Map();

  on(...args) {
    const [events, listener] = EventEmitter.#parse(args);
    if (typeof listener !== 'function') throw badArgs('a listener function is required');
    if (events === null) this.#any.add(listener);
    else for (const e of events) (this.#byEvent.get(e) ?? this.#byEvent.set(e, new Set()).get(e)).add(listener);
  }

  once(...args) {
    const [events, listener] = EventEmitter.#parse(args);
    if (typeof listener !== 'function') {
      return new Promise((resolve) => this.once(...(events ? [events] : []), resolve));
    }
    // Once, even when the event is emitted again from a listener before this one runs.
    const emitter = this;
    let done = false;
    function wrapper(...a) {
      if (done) return;
      done = true;
      emitter.off(wrapper);
      return listener.apply(this, a);
    }
    wrapper.listener = listener;
    this.on(...(events ? [events, wrapper] : [wrapper]));
  }

  off(...args) {
    const [events, listener] = EventEmitter.#parse(args);
    const matches = (l) => l === listener || l.listener === listener;
    if (events === null && !listener) {
      this.#any.clear();
      this.#byEvent.clear();
      return;
    }
    if (events === null) {
      for (const l of [...this.#any]) if (matches(l)) this.#any.delete(l);
      for (const set of this.#byEvent.values()) for (const l of [...set]) if (matches(l)) set.delete(l);
      return;
    }
    for (const e of events) {
      if (!listener) this.#byEvent.delete(e);
      else for (const l of [...(this.#byEvent.get(e) ?? [])]) if (matches(l)) this.#byEvent.get(e).delete(l);
    }
  }

  /** Whether anything listens for `event`. @internal */
  _hears(event) {
    return this.#any.size > 0 || (this.#byEvent.get(event)?.size ?? 0) > 0;
  }

  listeners(event) {
    return [...(event === undefined ? this.#any : this.#byEvent.get(event) ?? [])];
  }

  emit(event, ...args) {
    // As Ably's: a listener's `this` is `{ event }`, which names the event it hears.
    const self = { event };
    for (const l of [...this.#any, ...(this.#byEvent.get(event) ?? [])]) {
      try {
        l.apply(self, args);
      } catch (error) {
        // A listener's exception must not break delivery to the others, nor end the process.
        reportListenerError(error);
      }
    }
  }

  static #parse(args) {
    if (args.length === 0) return [null, undefined];
    if (typeof args[0] === 'function') return [null, args[0]];
    if (args[0] === null || args[0] === undefined) return [null, args[1]];
    const events = Array.isArray(args[0]) ? args[0] : [args[0]];
    return [events, args[1]];
  }
}

/** Where a listener's exception goes: the page's error reporting in a browser (the console and
 * `error` listeners, as an uncaught exception would), the console elsewhere (as ably-js logs it). */
function reportListenerError(error) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(error);
  else console.error('rollcall: a listener threw:', error);
}

/** As Ably's `whenState`: `null` when `emitter` is in `state` now, else the change to it. */
export function whenState(emitter, state) {
  return emitter.state === state ? Promise.resolve(null) : emitter.once(state);
}
