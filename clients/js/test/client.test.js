// Unit tests of ShardcastClient (src/index.js) under Node's test runner: `npm test`, or
// `node --test test/`. A fake WebSocket class is injected, and the test plays the server
// through it; time is node:test's mock timers (setTimeout and Date), so every delay is
// stepped exactly and nothing sleeps.
import assert from "node:assert/strict";
import { afterEach, beforeEach, mock, test } from "node:test";

import { CloseCode, ShardcastClient } from "../src/index.js";

const T0 = 1_700_000_000_000;  // a whole second, so iat is exact
const LIFETIME_S = 100;

// Records every socket the client opens. accept(), push() and end() are the server's side.
function fakeWebSocketClass() {
    const sockets = [];
    class FakeWebSocket {
        constructor(url, protocols) {
            this.url = new URL(url);
            this.protocols = protocols;
            this.readyState = 0;
            this.protocol = "";
            this.sent = [];
            this.closedWith = null;
            sockets.push(this);
        }
        send(text) {
            assert.equal(this.readyState, 1, "the client sent on a socket that is not open");
            this.sent.push(JSON.parse(text));
        }
        close(code, reason) {
            this.closedWith = { code, reason };
            this.readyState = 2;
        }
        accept() {
            this.readyState = 1;
            this.protocol = "shardcast.v1";
            this.onopen?.({});
        }
        push(frame) {
            const data = typeof frame === "string" ? frame : JSON.stringify(frame);
            this.onmessage?.({ data });
        }
        end(code = 1006, reason = "") {
            this.readyState = 3;
            this.onclose?.({ code, reason });
        }
    }
    return { FakeWebSocket, sockets };
}

// A JWT as the client sees one: it reads the payload and never checks the signature.
function jwt(claims) {
    const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
    return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.signature`;
}

function mintNow(serial) {
    const now = Math.floor(Date.now() / 1000);
    return jwt({ sub: "alice", serial, iat: now, exp: now + LIFETIME_S });
}

// Lets the client's pending awaits (the token callback) run.
const settle = () => new Promise((resolve) => setImmediate(resolve));

async function advance(ms) {
    mock.timers.tick(ms);
    await settle();
}

// A started client on a fake WebSocket, recording what it reports; options override.
async function started(options = {}) {
    const { FakeWebSocket, sockets } = fakeWebSocketClass();
    const seen = { states: [], messages: [], gaps: [], errors: [], tokens: [] };
    const client = new ShardcastClient({
        url: "ws://push.test/ws",
        token: () => {
            seen.tokens.push(mintNow(seen.tokens.length + 1));
            return seen.tokens.at(-1);
        },
        WebSocket: FakeWebSocket,
        onMessage: (data, meta) => seen.messages.push({ data, ...meta }),
        onGap: (gap) => seen.gaps.push(gap),
        onState: (state, detail) => seen.states.push({ state, ...detail }),
        onError: (error) => seen.errors.push(error),
        ...options,
    });
    client.start();
    await settle();
    return { client, sockets, seen, socket: () => sockets.at(-1) };
}

function delays(seen) {
    return seen.states.filter((s) => s.state === "reconnecting").map((s) => s.delayMs);
}

beforeEach(() => {
    mock.timers.enable({ apis: ["setTimeout", "Date"], now: T0 });
});

afterEach(() => {
    mock.timers.reset();
    mock.restoreAll();
});

test("ConnectsWithShardcastV1AndTheTokenAsAProtocolEntry", async () => {
    const { sockets, seen } = await started();
    assert.equal(sockets.length, 1);
    assert.deepEqual(sockets[0].protocols, ["shardcast.v1", `shardcast.token.${seen.tokens[0]}`]);
    assert.equal(sockets[0].url.href, "ws://push.test/ws");
});

test("TokenInQueryPutsTheTokenInTheUrlOnly", async () => {
    const { socket, seen } = await started({ tokenIn: "query" });
    assert.deepEqual(socket().protocols, ["shardcast.v1"]);
    assert.equal(socket().url.searchParams.get("token"), seen.tokens[0]);
});

test("StateEventsComeInOrder", async () => {
    const { client, socket, seen } = await started();
    socket().accept();
    socket().end(1006);
    await advance(delays(seen)[0]);
    socket().accept();
    client.stop();
    assert.deepEqual(seen.states.map((s) => s.state),
                     ["connecting", "open", "reconnecting", "open", "closed"]);
    assert.equal(seen.states[2].code, 1006);
    assert.equal(client.state, "closed");
});

test("BackoffDelaysGrowAndAreJitteredWithinBounds", async () => {
    // Alternately no jitter at all and the most there can be.
    let draw = 0;
    mock.method(Math, "random", () => (draw++ % 2 === 0 ? 0 : 0.999999));
    const { sockets, socket, seen } = await started();
    const ceilings = [250, 500, 1000, 2000, 4000, 8000, 10000, 10000];
    for (const [i, ceiling] of ceilings.entries()) {
        socket().end(1006);  // refused before it opened
        const delay = delays(seen)[i];
        assert.ok(delay >= ceiling * 0.5 && delay <= ceiling, `delay ${i}: ${delay} of ${ceiling}`);
        assert.equal(delay, i % 2 === 0 ? ceiling : Math.round(ceiling * (1 - 0.5 * 0.999999)));
        await advance(delay - 1);
        assert.equal(sockets.length, i + 1, `reconnected before delay ${i} ran out`);
        await advance(1);
        assert.equal(sockets.length, i + 2, `no reconnect after delay ${i}`);
    }
});

test("ASettledConnectionStartsTheBackoffAgain", async () => {
    mock.method(Math, "random", () => 0);
    const { socket, seen } = await started();
    for (let i = 0; i < 3; ++i) {
        socket().end(1006);
        await advance(delays(seen).at(-1));
    }
    socket().accept();
    await advance(1000);  // open, but not for resetAfterMs (5 s): still failing
    socket().end(1006);
    await advance(delays(seen).at(-1));
    socket().accept();
    await advance(5000);
    socket().end(1001, "server shutdown");
    assert.deepEqual(delays(seen), [250, 500, 1000, 2000, 250]);
});

test("ReplacedConnectionsBackOffInsteadOfTakingTurns", async () => {
    mock.method(Math, "random", () => 0);
    const { socket, seen } = await started();
    for (let i = 0; i < 4; ++i) {
        socket().accept();
        await advance(60_000);  // long settled, yet replaced
        socket().end(CloseCode.replaced, "replaced by a newer connection");
        await advance(delays(seen).at(-1));
    }
    assert.deepEqual(delays(seen), [250, 500, 1000, 2000]);
});

test("ReconnectsFromTheLastDeliveredOffsetAndEpoch", async () => {
    const { socket, seen } = await started();
    socket().accept();
    socket().push({ data: "a", offset: 5, epoch: "e1" });
    socket().push({ data: "b", offset: 6, epoch: "e1" });
    socket().end(1006);
    await advance(delays(seen)[0]);
    assert.equal(socket().url.searchParams.get("since"), "6");
    assert.equal(socket().url.searchParams.get("epoch"), "e1");
    socket().accept();
    assert.deepEqual(seen.states.at(-1).resumedFrom, { offset: "6", epoch: "e1" });
});

test("DataWithoutOffsetsReconnectsToTheLiveStream", async () => {
    const { client, socket, seen } = await started();
    socket().accept();
    socket().push({ data: { n: 1 } });
    socket().end(4000);
    await advance(delays(seen)[0]);
    assert.equal(socket().url.search, "");
    assert.deepEqual(seen.messages, [{ data: { n: 1 }, offset: undefined, epoch: undefined }]);
    assert.equal(client.position, null);
});

test("AnOffsetWithoutAnEpochIsNotResumedFrom", async () => {
    // The server takes since and epoch together or not at all.
    const { socket, seen } = await started();
    socket().accept();
    socket().push({ data: "a", offset: 5 });
    socket().end(1006);
    await advance(delays(seen)[0]);
    assert.equal(socket().url.search, "");
    assert.equal(seen.messages[0].offset, "5");
});

test("ResumeFromStartsTheFirstConnectionThere", async () => {
    const { socket } = await started({ resumeFrom: { offset: 41n, epoch: "e9" } });
    assert.equal(socket().url.searchParams.get("since"), "41");
    assert.equal(socket().url.searchParams.get("epoch"), "e9");
});

test("RepeatedOffsetsAreSkippedWithinAnEpoch", async () => {
    const { client, socket, seen } = await started();
    socket().accept();
    for (const offset of [1, 2, 2, 1, 3]) socket().push({ data: offset, offset, epoch: "e1" });
    socket().push({ data: "new epoch", offset: 1, epoch: "e2" });
    assert.deepEqual(seen.messages.map((m) => `${m.epoch}:${m.offset}`),
                     ["e1:1", "e1:2", "e1:3", "e2:1"]);
    assert.deepEqual(client.position, { offset: "1", epoch: "e2" });
});

test("OffsetsPast2To53StayExact", async () => {
    const { socket, seen } = await started();
    socket().accept();
    // 2^53 and 2^53 + 1 are one double; as text they are two offsets. The data holds an
    // "offset" of its own, which is not the frame's.
    socket().push(
        '{"data":{"offset":1,"s":"\\"offset\\":3"},"offset":9007199254740992,"epoch":"e"}');
    socket().push('{"data":2, "offset" : 9007199254740993 ,"epoch":"e"}');
    socket().push('{"data":3,"offset":9007199254740993,"epoch":"e"}');
    socket().push('{"data":4,"offset":18446744073709551615,"epoch":"e"}');
    assert.deepEqual(seen.messages.map((m) => m.offset),
                     ["9007199254740992", "9007199254740993", "18446744073709551615"]);
    assert.deepEqual(seen.messages[0].data, { offset: 1, s: '"offset":3' });
});

test("AGapIsReportedWithItsSinceEpochAndReason", async () => {
    const { socket, seen } = await started();
    socket().accept();
    socket().push({ gap: { since: 42, epoch: "e2", reason: "evicted" } });
    socket().push('{"gap":{"reason":"epoch","since":18446744073709551615,"epoch":"e3"}}');
    socket().push({ data: "held", offset: 43, epoch: "e2" });
    assert.deepEqual(seen.gaps, [
        { since: "42", epoch: "e2", reason: "evicted" },
        { since: "18446744073709551615", epoch: "e3", reason: "epoch" },
    ]);
    assert.equal(seen.messages.length, 1);
});

test("TheTokenIsRefreshedInBandWhenAQuarterOfItsLifetimeRemains", async () => {
    const { sockets, socket, seen } = await started();
    socket().accept();
    await advance(LIFETIME_S * 750 - 1);
    assert.deepEqual(socket().sent, []);
    await advance(1);
    assert.deepEqual(socket().sent, [{ refresh: seen.tokens[1] }]);
    // The next refresh is planned by the new token, once the server took it.
    socket().push({ refreshed: { exp: Math.floor(Date.now() / 1000) + LIFETIME_S } });
    await advance(LIFETIME_S * 750 - 1);
    assert.equal(socket().sent.length, 1);
    await advance(1);
    assert.deepEqual(socket().sent.at(-1), { refresh: seen.tokens[2] });
    assert.equal(sockets.length, 1);
});

test("AFixedTokenIsNeverRefreshed", async () => {
    const token = mintNow(1);
    const { socket } = await started({ token });
    socket().accept();
    await advance(LIFETIME_S * 2000);
    assert.deepEqual(socket().sent, []);
    assert.deepEqual(socket().protocols, ["shardcast.v1", `shardcast.token.${token}`]);
});

for (const code of [CloseCode.tokenExpired, CloseCode.refreshRefused]) {
    test(`Close${code}ReconnectsAtOnceWithANewToken`, async () => {
        const { sockets, socket, seen } = await started();
        socket().accept();
        await advance(10_000);
        socket().end(code, code === 4004 ? "token expired" : "refresh refused: bad_signature");
        assert.equal(delays(seen)[0], 0);
        await advance(0);
        assert.equal(sockets.length, 2);
        assert.equal(seen.tokens.length, 2);
        assert.deepEqual(socket().protocols, ["shardcast.v1", `shardcast.token.${seen.tokens[1]}`]);
    });
}

test("StopClosesTheSocketAndReconnectsNoMore", async () => {
    const { client, sockets, socket, seen } = await started();
    socket().accept();
    client.stop();
    assert.deepEqual(socket().closedWith, { code: 1000, reason: "" });
    socket().end(1000);  // the server's answer reaches no one
    await advance(60_000);
    assert.equal(sockets.length, 1);
    assert.deepEqual(seen.states.map((s) => s.state), ["connecting", "open", "closed"]);
});

test("StopDuringTheBackoffCancelsTheReconnect", async () => {
    const { client, sockets, socket } = await started();
    socket().accept();
    socket().end(1006);
    client.stop();
    await advance(60_000);
    assert.equal(sockets.length, 1);
});

test("StopWhileATokenIsBeingFetchedOpensNoSocket", async () => {
    let resolve;
    const { client, sockets } = await started({
        token: () => new Promise((r) => (resolve = r)),
    });
    client.stop();
    resolve(mintNow(1));
    await settle();
    assert.equal(sockets.length, 0);
    assert.equal(client.state, "closed");
});

test("StopCalledFromOnStateOpensNoSocket", async () => {
    const { FakeWebSocket, sockets } = fakeWebSocketClass();
    const client = new ShardcastClient({
        url: "ws://push.test/ws",
        token: () => mintNow(1),
        WebSocket: FakeWebSocket,
        onState: (state) => state === "connecting" && client.stop(),
    });
    client.start();
    await advance(60_000);
    assert.equal(sockets.length, 0);
    assert.equal(client.state, "closed");
});

test("ATokenCallbackThatFailsIsRetriedWithBackoff", async () => {
    let calls = 0;
    const { sockets, seen } = await started({
        token: () => {
            if (++calls === 1) throw new Error("token endpoint down");
            return mintNow(calls);
        },
    });
    assert.equal(sockets.length, 0);
    assert.equal(seen.states.at(-1).state, "reconnecting");
    assert.equal(seen.states.at(-1).error.message, "token endpoint down");
    assert.equal(seen.errors.length, 1);
    await advance(delays(seen)[0]);
    assert.equal(sockets.length, 1);
});

test("AFrameThatIsNotJsonIsReportedAndSkipped", async () => {
    const { socket, seen } = await started();
    socket().accept();
    socket().push("not json");
    socket().push({ data: "after" });
    assert.equal(seen.errors.length, 1);
    assert.deepEqual(seen.messages.map((m) => m.data), ["after"]);
});

test("ACallbackThatThrowsGoesToOnErrorAndTheStreamGoesOn", async () => {
    const delivered = [];
    const { socket, seen } = await started({
        onMessage: (data) => {
            delivered.push(data);
            if (data === 1) throw new Error("application bug");
        },
    });
    socket().accept();
    socket().push({ data: 1, offset: 1 });
    socket().push({ data: 2, offset: 2 });
    assert.deepEqual(delivered, [1, 2]);
    assert.equal(seen.errors[0].message, "application bug");
});

test("WithoutAWebSocketTheConstructorSaysWhatToPass",
     { skip: typeof globalThis.WebSocket === "function" && "this Node has a global WebSocket" },
     () => {
         assert.throws(() => new ShardcastClient({ url: "ws://push.test/ws", token: "t" }),
                       /pass one as options.WebSocket/);
     });
