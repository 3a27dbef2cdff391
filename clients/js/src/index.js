// @shardcast/client: one client id's connection to a shardcast server over the `shardcast.v1`
// subprotocol, kept open for as long as the application wants it. It reconnects with jittered
// exponential backoff, resumes from the last offset it delivered, refreshes the connect token
// in band before it expires, and reports gaps and state changes. Runs in browsers and in Node
// (with a WebSocket implementation: the global one of Node 22, or the npm ws package's).
// Everything runs on the event loop that called start(), so no state needs guarding; stale
// callbacks (a socket already replaced, a token fetched for a connection that is gone) are
// recognised by their generation and dropped.

const PROTOCOL = "shardcast.v1";
const TOKEN_PROTOCOL_PREFIX = "shardcast.token.";
const OPEN = 1;
// The server closes a session that sends a second refresh within a second of the last (4005).
const MIN_REFRESH_SPACING_MS = 1000;

/** The close codes a shardcast server uses (docs/protocol.md#close-codes). */
export const CloseCode = Object.freeze({
    normal: 1000,
    serverShutdown: 1001,
    policy: 1008,
    replaced: 4001,
    heartbeatTimeout: 4002,
    sendTimeout: 4003,
    tokenExpired: 4004,
    refreshRefused: 4005,
});

const DEFAULT_BACKOFF = Object.freeze({
    initialMs: 250,
    maxMs: 10000,
    factor: 2,
    jitter: 0.5,
    resetAfterMs: 5000,
});

export class ShardcastClient {
    #options;
    #WebSocket;
    #backoff;
    #refreshAhead;
    #state = "closed";
    #running = false;
    // Bumped by every connection attempt and by stop(): async work that finds it changed
    // belongs to a connection that no longer exists.
    #generation = 0;
    #socket = null;
    #openedAt = null;
    #reconnectTimer = null;
    #refreshTimer = null;
    // Connections in a row that ended before they settled; the next delay grows with it.
    #failures = 0;
    // The last {offset, epoch} delivered to onMessage: where a reconnect resumes from.
    #position = null;
    // The token the open session runs on, and one sent in a refresh and not yet answered.
    #token = null;
    #pendingRefresh = null;
    #lastRefreshAt = -Infinity;

    /** @param {import("../index.js").ShardcastClientOptions} options */
    constructor(options) {
        if (options === null || typeof options !== "object") {
            throw new TypeError("ShardcastClient: options must be an object");
        }
        checkUrl(options.url);
        if (typeof options.token !== "string" && typeof options.token !== "function") {
            throw new TypeError("ShardcastClient: options.token must be a string or a function");
        }
        for (const name of ["onMessage", "onGap", "onState", "onError"]) {
            if (options[name] !== undefined && typeof options[name] !== "function") {
                throw new TypeError(`ShardcastClient: options.${name} must be a function`);
            }
        }
        const tokenIn = options.tokenIn ?? "protocol";
        if (tokenIn !== "protocol" && tokenIn !== "query") {
            throw new TypeError('ShardcastClient: options.tokenIn must be "protocol" or "query"');
        }
        this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
        if (typeof this.#WebSocket !== "function") {
            throw new TypeError(
                "ShardcastClient: no WebSocket here; pass one as options.WebSocket " +
                    '(in Node before 22: import { WebSocket } from "ws")');
        }
        this.#backoff = checkBackoff({ ...DEFAULT_BACKOFF, ...options.backoff });
        this.#refreshAhead = options.refreshAhead ?? 0.25;
        if (!(this.#refreshAhead > 0 && this.#refreshAhead < 1)) {
            throw new RangeError("ShardcastClient: options.refreshAhead must be in (0, 1)");
        }
        if (options.resumeFrom != null) {
            this.#position = checkPosition(options.resumeFrom);
        }
        this.#options = { ...options, tokenIn };
    }

    /** "connecting" | "open" | "reconnecting" | "closed" */
    get state() {
        return this.#state;
    }

    /** The last {offset, epoch} delivered to onMessage, or null: save it to resume later. */
    get position() {
        return this.#position && { ...this.#position };
    }

    /** Connects, and keeps reconnecting until stop(). Does nothing when already started. */
    start() {
        if (this.#running) return;
        this.#running = true;
        this.#failures = 0;
        this.#setState("connecting");
        this.#connect();
    }

    /** Closes the connection (with `code`, 1000 or 3000-4999) and reconnects no more. */
    stop(code = 1000, reason = "") {
        if (!this.#running) return;
        this.#running = false;
        ++this.#generation;
        clearTimeout(this.#reconnectTimer);
        this.#reconnectTimer = null;
        this.#clearRefresh();
        const socket = this.#socket;
        this.#socket = null;
        if (socket) {
            detach(socket);
            try {
                socket.close(code, reason);
            } catch (error) {
                this.#report(error);
            }
        }
        this.#setState("closed");
    }

    // A connection: a token first (the callback may fetch one), then the socket.
    async #connect() {
        if (!this.#running) return;  // stopped from the onState that announced this attempt
        const generation = ++this.#generation;
        // The server resumes from an offset within an epoch, both or neither.
        const since = this.#position?.epoch !== undefined ? this.#position : null;
        let token;
        let socket;
        try {
            token = await this.#fetchToken();
            if (generation !== this.#generation) return;
            const url = this.#address(token.jwt, since);
            socket = new this.#WebSocket(url, this.#protocols(token.jwt));
        } catch (error) {
            if (generation !== this.#generation) return;
            this.#report(error);
            this.#retry({ error });
            return;
        }
        this.#socket = socket;
        this.#openedAt = null;
        socket.onopen = () => this.#onOpen(socket, token, since);
        socket.onmessage = (event) => this.#onMessage(socket, event);
        socket.onclose = (event) => this.#onClose(socket, event);
        // Every error is followed by a close event, which is where the client acts.
        socket.onerror = () => {};
    }

    #onOpen(socket, token, since) {
        if (socket !== this.#socket) return;
        this.#openedAt = Date.now();
        this.#token = token;
        this.#pendingRefresh = null;
        this.#lastRefreshAt = -Infinity;
        this.#scheduleRefresh();
        this.#setState("open", { resumedFrom: since ? { ...since } : null });
    }

    #onMessage(socket, event) {
        if (socket !== this.#socket) return;
        const text = event.data;
        if (typeof text !== "string") {
            this.#report(new Error("shardcast: a binary frame, not shardcast.v1; ignored"));
            return;
        }
        let frame;
        try {
            frame = JSON.parse(text);
        } catch (error) {
            this.#report(new Error(`shardcast: a frame that is not JSON; ignored (${error})`));
            return;
        }
        if (frame === null || typeof frame !== "object" || Array.isArray(frame)) {
            this.#report(new Error("shardcast: a frame that is not a JSON object; ignored"));
        } else if (Object.hasOwn(frame, "data")) {
            this.#deliver(frame, text);
        } else if (Object.hasOwn(frame, "gap")) {
            this.#onGap(frame.gap, text);
        } else if (Object.hasOwn(frame, "refreshed")) {
            this.#onRefreshed();
        }
        // Any other frame belongs to a later version of the protocol: ignored.
    }

    #deliver(frame, text) {
        const offset = integerText(frame.offset, () => memberText(text, "offset"));
        const epoch = typeof frame.epoch === "string" ? frame.epoch : undefined;
        if (offset !== undefined) {
            // The server sends no offset twice; this is the safety net that makes "at most
            // once" the client's own promise. Offsets compare only within one epoch.
            const last = this.#position;
            if (last && last.epoch === epoch && compareOffsets(offset, last.offset) <= 0) return;
            this.#position = { offset, epoch };
        }
        this.#call("onMessage", frame.data, { offset, epoch });
    }

    #onGap(gap, text) {
        if (gap === null || typeof gap !== "object") {
            this.#report(new Error("shardcast: a gap frame without a gap object; ignored"));
            return;
        }
        const since = integerText(gap.since,
                                  () => memberText(memberText(text, "gap") ?? "", "since"));
        this.#call("onGap", {
            since,
            epoch: typeof gap.epoch === "string" ? gap.epoch : undefined,
            reason: typeof gap.reason === "string" ? gap.reason : "unknown",
        });
    }

    #onClose(socket, event) {
        if (socket !== this.#socket) return;
        detach(socket);
        this.#socket = null;
        this.#clearRefresh();
        const code = event.code;
        const reason = event.reason ?? "";
        // A connection settled when it stayed open long enough; a replaced one (4001) never
        // does, so two tabs with one id back off from each other instead of taking turns.
        const settled = this.#openedAt !== null && code !== CloseCode.replaced &&
            Date.now() - this.#openedAt >= this.#backoff.resetAfterMs;
        if (settled) this.#failures = 0;
        // An expired or refused token: the next connection brings a new one, at once.
        const tokenEnded = code === CloseCode.tokenExpired || code === CloseCode.refreshRefused;
        this.#retry({ code, reason }, settled && tokenEnded ? 0 : undefined);
    }

    #retry(detail, delayMs = this.#delay(this.#failures)) {
        const attempt = ++this.#failures;
        this.#reconnectTimer = setTimeout(() => {
            this.#reconnectTimer = null;
            this.#connect();
        }, delayMs);
        // After the timer is set, so that a stop() called from onState cancels it.
        this.#setState("reconnecting", { ...detail, delayMs, attempt });
    }

    // min(maxMs, initialMs * factor^n), less a random part of up to `jitter` of it, so that
    // the clients a restart dropped together do not come back together.
    #delay(failures) {
        const { initialMs, maxMs, factor, jitter } = this.#backoff;
        const ceiling = Math.min(maxMs, initialMs * factor ** failures);
        return Math.round(ceiling * (1 - jitter * Math.random()));
    }

    // The refresh falls when `refreshAhead` of the token's lifetime remains. With an `iat`
    // the lifetime is exp - iat, counted from when the token arrived, so a client clock that
    // is off does not matter; without one it is what remained of exp by the client's clock.
    #scheduleRefresh() {
        this.#clearRefresh();
        if (typeof this.#options.token !== "function") return;  // a fixed token cannot renew
        const { claims, obtainedAt } = this.#token;
        if (claims.exp === undefined) return;
        const start = claims.iat !== undefined ? claims.iat * 1000 : obtainedAt;
        const lifetime = Math.max(0, claims.exp * 1000 - start);
        const at = Math.max(obtainedAt + lifetime * (1 - this.#refreshAhead),
                            this.#lastRefreshAt + MIN_REFRESH_SPACING_MS);
        this.#refreshTimer = setTimeout(() => this.#refresh(), Math.max(0, at - Date.now()));
    }

    async #refresh() {
        this.#refreshTimer = null;
        const generation = this.#generation;
        let token;
        try {
            token = await this.#fetchToken();
        } catch (error) {
            if (generation !== this.#generation) return;
            this.#report(error);
            // Try again later; if no token comes before exp, the server closes with 4004 and
            // the reconnect asks for one again.
            this.#refreshTimer = setTimeout(() => this.#refresh(), this.#backoff.maxMs);
            return;
        }
        const socket = this.#socket;
        if (generation !== this.#generation || !socket || socket.readyState !== OPEN) return;
        this.#pendingRefresh = token;
        this.#lastRefreshAt = Date.now();
        socket.send(JSON.stringify({ refresh: token.jwt }));
    }

    // {"refreshed":...}: the session now runs on the token sent last; plan the next refresh
    // by that token. A refused one closes the session with 4005 instead.
    #onRefreshed() {
        if (!this.#pendingRefresh) return;
        this.#token = this.#pendingRefresh;
        this.#pendingRefresh = null;
        this.#scheduleRefresh();
    }

    #clearRefresh() {
        clearTimeout(this.#refreshTimer);
        this.#refreshTimer = null;
        this.#pendingRefresh = null;
    }

    async #fetchToken() {
        const source = this.#options.token;
        const value = typeof source === "function" ? await source() : source;
        if (typeof value !== "string" || value.trim() === "") {
            throw new TypeError("shardcast: the token callback returned no token");
        }
        // Trimmed: a token endpoint's body often ends in a newline.
        const jwt = value.trim();
        return { jwt, claims: tokenClaims(jwt), obtainedAt: Date.now() };
    }

    #address(jwt, since) {
        const url = resolveUrl(this.#options.url);
        if (this.#options.tokenIn === "query") url.searchParams.set("token", jwt);
        if (since) {
            url.searchParams.set("since", since.offset);
            url.searchParams.set("epoch", since.epoch);
        }
        return url.href;
    }

    #protocols(jwt) {
        // The token entry is never selected by the server, so it does not come back.
        return this.#options.tokenIn === "protocol" ? [PROTOCOL, TOKEN_PROTOCOL_PREFIX + jwt]
                                                    : [PROTOCOL];
    }

    #setState(state, detail) {
        this.#state = state;
        this.#call("onState", state, detail);
    }

    // A callback that throws is the application's bug: it goes to onError, or else is thrown
    // again outside the client, so the client's own state stays consistent either way.
    #call(name, ...args) {
        const callback = this.#options[name];
        if (!callback) return;
        try {
            callback(...args);
        } catch (error) {
            if (name !== "onError" && this.#options.onError) {
                this.#report(error);
            } else {
                queueMicrotask(() => {
                    throw error;
                });
            }
        }
    }

    #report(error) {
        if (this.#options.onError) this.#call("onError", error);
    }
}

// The socket's events go nowhere from here on. The error handler stays: npm ws throws an
// error event that has no listener, as closing a socket that is still connecting raises.
function detach(socket) {
    socket.onopen = socket.onmessage = socket.onclose = null;
    socket.onerror = () => {};
}

function resolveUrl(url) {
    // Relative to the page in a browser; http(s) becomes ws(s), as newer browsers do anyway.
    const resolved = new URL(url, globalThis.location?.href);
    if (resolved.protocol === "http:") resolved.protocol = "ws:";
    if (resolved.protocol === "https:") resolved.protocol = "wss:";
    return resolved;
}

function checkUrl(url) {
    if (typeof url !== "string") {
        throw new TypeError("ShardcastClient: options.url must be a string");
    }
    let resolved;
    try {
        resolved = resolveUrl(url);
    } catch {
        throw new TypeError(`ShardcastClient: options.url is not a URL: ${url}`);
    }
    if (resolved.protocol !== "ws:" && resolved.protocol !== "wss:") {
        throw new TypeError(`ShardcastClient: options.url must be ws(s): or http(s): ${url}`);
    }
}

function checkBackoff(backoff) {
    const { initialMs, maxMs, factor, jitter, resetAfterMs } = backoff;
    const ok = initialMs >= 0 && maxMs >= initialMs && factor >= 1 && jitter >= 0 &&
        jitter <= 1 && resetAfterMs >= 0;
    if (!ok) {
        throw new RangeError("ShardcastClient: options.backoff needs 0 <= initialMs <= maxMs, " +
                             "factor >= 1, 0 <= jitter <= 1, resetAfterMs >= 0");
    }
    return Object.freeze(backoff);
}

function checkPosition(position) {
    const offset = String(position.offset ?? "");
    if (!/^(0|[1-9][0-9]*)$/.test(offset)) {
        throw new TypeError(
            "ShardcastClient: options.resumeFrom.offset must be a non-negative integer");
    }
    if (typeof position.epoch !== "string" || position.epoch === "") {
        throw new TypeError("ShardcastClient: options.resumeFrom.epoch must be a string");
    }
    return { offset, epoch: position.epoch };
}

// Offsets are uint64 and may pass 2^53, where a JSON number parsed into a double loses digits.
// They are kept as decimal strings: a safe integer prints exactly; a larger one is read again
// from the frame's own text, where its digits are intact. Strings without leading zeros compare
// by length, then character by character.
function integerText(value, rawText) {
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0) return undefined;
    if (Number.isSafeInteger(value)) return String(value);
    const raw = rawText();
    return raw !== undefined && /^(0|[1-9][0-9]*)$/.test(raw) ? raw : undefined;
}

function compareOffsets(a, b) {
    return a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0;
}

// The text of the value of member `name` of the JSON object `json` (text JSON.parse accepted),
// or undefined. Only that object's own members are looked at, never those of nested values;
// the last of repeated names wins, as in JSON.parse.
function memberText(json, name) {
    let i = skipSpace(json, 0);
    if (json[i] !== "{") return undefined;
    i = skipSpace(json, i + 1);
    let found;
    while (i < json.length && json[i] !== "}") {
        const keyEnd = skipString(json, i);
        const key = JSON.parse(json.slice(i, keyEnd));
        const start = skipSpace(json, skipSpace(json, keyEnd) + 1);  // past the ':'
        const end = skipValue(json, start);
        if (key === name) found = json.slice(start, end);
        i = skipSpace(json, end);
        if (json[i] === ",") i = skipSpace(json, i + 1);
    }
    return found;
}

function skipSpace(json, i) {
    while (i < json.length && " \t\n\r".includes(json[i])) ++i;
    return i;
}

function skipString(json, i) {
    for (++i; json[i] !== '"'; ++i) {
        if (json[i] === "\\") ++i;
    }
    return i + 1;
}

function skipValue(json, i) {
    const first = json[i];
    if (first === '"') return skipString(json, i);
    if (first !== "{" && first !== "[") {
        while (i < json.length && !",}] \t\n\r".includes(json[i])) ++i;
        return i;
    }
    let depth = 0;
    do {
        const c = json[i];
        if (c === '"') {
            i = skipString(json, i);
            continue;
        }
        if (c === "{" || c === "[") ++depth;
        else if (c === "}" || c === "]") --depth;
        ++i;
    } while (depth > 0);
    return i;
}

// The token's exp and iat (Unix seconds), read from its payload without verifying anything:
// the server verifies; the client only needs to know when to refresh.
function tokenClaims(jwt) {
    const payload = jwt.split(".")[1];
    if (!payload) return {};
    try {
        const base64 = payload.replace(/-/g, "+").replace(/_/g, "/");
        const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
        const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
        const claims = JSON.parse(new TextDecoder().decode(bytes));
        const seconds = (value) => (Number.isFinite(value) ? value : undefined);
        return { exp: seconds(claims?.exp), iat: seconds(claims?.iat) };
    } catch {
        return {};
    }
}
