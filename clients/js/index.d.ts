// Types of @shardcast/client (src/index.js), written by hand. docs/js-client.md describes
// the behaviour behind each member.

/** The close codes a shardcast server uses. */
export declare const CloseCode: Readonly<{
    normal: 1000;
    serverShutdown: 1001;
    policy: 1008;
    replaced: 4001;
    heartbeatTimeout: 4002;
    sendTimeout: 4003;
    tokenExpired: 4004;
    refreshRefused: 4005;
}>;

/** "connecting" after start(), "open" while connected, "reconnecting" between connections
 * (waiting out the backoff, fetching a token, or handshaking), "closed" before start() and
 * after stop(). */
export type ShardcastState = "connecting" | "open" | "reconnecting" | "closed";

/** A place in one client's stream. `offset` is a uint64 in decimal, kept as a string so that
 * offsets past 2^53 stay exact; offsets compare only within one `epoch`, and the client
 * resumes only from a position with an epoch. */
export interface ShardcastPosition {
    offset: string;
    epoch?: string;
}

/** What came with a message: both absent while the server keeps no history. */
export interface MessageMeta {
    offset?: string;
    epoch?: string;
}

/** Sent first after a resume whose history was incomplete: messages after `since` were lost. */
export interface ShardcastGap {
    since?: string;
    epoch?: string;
    /** "evicted" | "expired" | "epoch" | "unavailable", or a reason of a later server. */
    reason: string;
}

/** The detail passed with each state. */
export interface StateDetail {
    /** "open": where this connection resumed from, or null for the live stream only. */
    resumedFrom?: ShardcastPosition | null;
    /** "reconnecting": the close code and reason of the connection that ended, if it opened
     * a socket at all (1006 when it ended without a close frame). */
    code?: number;
    reason?: string;
    /** "reconnecting": why no socket was opened (the token callback failed, for one). */
    error?: unknown;
    /** "reconnecting": the wait before the next connection, and its number in the current run
     * of connections that did not settle. */
    delayMs?: number;
    attempt?: number;
}

export interface BackoffOptions {
    /** The first delay, before jitter. Default 250. */
    initialMs?: number;
    /** The largest delay, before jitter. Default 10000. */
    maxMs?: number;
    /** Each unsettled connection multiplies the delay by it. Default 2. */
    factor?: number;
    /** Up to this part of each delay is taken off at random: 0.5 gives [d/2, d]. Default 0.5. */
    jitter?: number;
    /** A connection open this long settled: the delays start again from initialMs.
     * Default 5000. */
    resetAfterMs?: number;
}

/** A WebSocket class: the browser's, Node 22's global one, or the npm ws package's. What the
 * client uses of it: readyState, send, close, and the onopen, onmessage ({data}), onclose
 * ({code, reason}) and onerror properties. */
export type WebSocketClass = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface WebSocketLike {
    readonly readyState: number;
    send(data: string): void;
    close(code?: number, reason?: string): void;
    // Handler parameters are `any`: each implementation has an event type of its own.
    onopen: ((event: any) => void) | null;
    onmessage: ((event: any) => void) | null;
    onclose: ((event: any) => void) | null;
    onerror: ((event: any) => void) | null;
}

export interface ShardcastClientOptions {
    /** The server's WebSocket URL, e.g. "wss://push.example.com/ws"; relative to the page in a
     * browser, and http(s) is taken as ws(s). The client id is the token's `sub`. */
    url: string;
    /** A connect token, or a function giving one (or a promise of one). A function is called
     * for every connection and for every refresh, and should return a freshly minted token;
     * with a fixed string the client never refreshes. */
    token: string | (() => string | Promise<string>);
    /** Each message, in order, at most once per offset. */
    onMessage?: (data: unknown, meta: MessageMeta) => void;
    /** History after `since` was lost; the messages that follow are what the server still held. */
    onGap?: (gap: ShardcastGap) => void;
    onState?: (state: ShardcastState, detail?: StateDetail) => void;
    /** Problems the client carried on after: the token callback failed, a frame was not
     * JSON, a callback threw. */
    onError?: (error: unknown) => void;
    /** Where no global WebSocket exists (Node before 22): `import { WebSocket } from "ws"`. */
    WebSocket?: WebSocketClass;
    /** How the token travels: a `shardcast.token.<jwt>` subprotocol entry (the default; kept
     * out of proxies' access logs) or the `token` query parameter. */
    tokenIn?: "protocol" | "query";
    backoff?: BackoffOptions;
    /** Refresh when this part of the token's lifetime remains. Default 0.25. */
    refreshAhead?: number;
    /** Resume from a position saved from `client.position`, e.g. across a page reload. */
    resumeFrom?: { offset: string | number | bigint; epoch: string } | null;
}

export declare class ShardcastClient {
    constructor(options: ShardcastClientOptions);
    readonly state: ShardcastState;
    /** The last position delivered to onMessage (a copy), or null. */
    readonly position: ShardcastPosition | null;
    /** Connects, and keeps reconnecting until stop(). Does nothing when already started. */
    start(): void;
    /** Closes the connection with `code` (1000, or 3000-4999) and reconnects no more. */
    stop(code?: number, reason?: string): void;
}
