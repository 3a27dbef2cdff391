// The JavaScript client (clients/js) in a real browser against the real server: headless
// Chromium (Debian's /usr/bin/chromium, driven by playwright-core) opens page.html, whose
// ShardcastClient connects to the server through a TCP proxy this test controls. The test
// publishes numbered messages over the API while it cuts the connection again and again,
// three ways in turn: the server closes it (POST /api/v1/disconnect, code 4000), the page
// closes its socket (code 3001), and the proxy resets the TCP connection (the browser sees
// 1006). Tokens live 6 s and the client refreshes them in band; a quiet phase checks that
// refreshes keep one connection alive past several expiries.
//
// What must hold depends on the server:
//   - its data frames carry offsets (it keeps history and resumes): every message arrives
//     exactly once, in order, whatever was cut when;
//   - they do not (resume not there yet): no message twice, all in order, and every message
//     published while the page was connected arrives. Messages published around a cut may
//     be lost; the test says how many.
// --require-resume fails the second case instead: the switch to turn on (in
// tests/browser/CMakeLists.txt) once the server resumes.
//
// Usage: node browser_client_test.mjs --shardcast BIN --source DIR --out DIR [--require-resume]
// Run from the build tree, where `npm ci` installed playwright-core beside this file. Exits 0
// when it passed, 1 when not, 77 (skipped) when /usr/bin/chromium is missing. Every wait is
// bounded, and the whole run gives up after GIVE_UP_MS.
import { spawn } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync }
    from "node:fs";
import { createServer } from "node:http";
import { createConnection, createServer as createTcpServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const CHROMIUM = "/usr/bin/chromium";
const SKIPPED = 77;
const CLIENT_ID = "browser-e2e";
const ROUNDS = 9;            // each: 10 steady, 5 + cut + 5 racing, 10 while away
const FINAL_STEADY = 30;     // after the quiet phase
const MESSAGES = ROUNDS * 30 + FINAL_STEADY;
const TOKEN_TTL_S = 6;
const REFRESH_AHEAD = 0.5;   // refresh 3 s into each token's 6
const QUIET_REFRESHES = 2;   // refreshes one connection must outlive in the quiet phase
const WAIT_MS = 20_000;
const GIVE_UP_MS = 150_000;
const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"];

class TestFailure extends Error {}

const started = Date.now();
const log = (line) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s] ${line}`);

async function waitUntil(predicate, what, timeoutMs = WAIT_MS) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
        const value = await predicate();
        if (value) return value;
        if (Date.now() > deadline) {
            throw new TestFailure(`timed out after ${timeoutMs} ms: ${what}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
    }
}

// An HS256 JWT, signed here with node:crypto: the page's backend mints its own tokens.
function mint(secret, claims) {
    const part = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const signed = `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}`;
    return `${signed}.${createHmac("sha256", secret).update(signed).digest("base64url")}`;
}

// The page, the client's source, and a token endpoint, on a port of 127.0.0.1 of their own:
// the page's origin, which the server is told to allow.
function startPageServer(source, secret) {
    const stats = { tokens: 0 };
    const server = createServer((request, response) => {
        const path = new URL(request.url, "http://127.0.0.1").pathname;
        const send = (type, body) => {
            response.writeHead(200, { "Content-Type": type, "Cache-Control": "no-store" });
            response.end(body);
        };
        if (path === "/") {
            send("text/html; charset=utf-8", readFileSync(new URL("page.html", import.meta.url)));
        } else if (path === "/client/index.js") {
            send("text/javascript", readFileSync(join(source, "clients/js/src/index.js")));
        } else if (path === "/token") {
            ++stats.tokens;
            const now = Math.floor(Date.now() / 1000);
            const claims = { sub: CLIENT_ID, iat: now, exp: now + TOKEN_TTL_S };
            send("text/plain", mint(secret, claims));
        } else {
            response.writeHead(404).end();
        }
    });
    return listen(server).then((port) => ({ server, port, stats }));
}

// Passes each browser connection on to the server, and cut() resets them all: a network
// failure, as far as either end can tell.
function startProxy(serverPort) {
    const pairs = new Set();
    const server = createTcpServer((downstream) => {
        const upstream = createConnection({ host: "127.0.0.1", port: serverPort });
        const pair = { downstream, upstream };
        pairs.add(pair);
        downstream.pipe(upstream).pipe(downstream);
        const end = () => {
            pairs.delete(pair);
            downstream.destroy();
            upstream.destroy();
        };
        downstream.on("error", end).on("close", end);
        upstream.on("error", end).on("close", end);
    });
    const cut = () => {
        for (const { downstream, upstream } of pairs) {
            downstream.resetAndDestroy();
            upstream.resetAndDestroy();
        }
        pairs.clear();
    };
    return listen(server).then((port) => ({ server, port, cut }));
}

function listen(server) {
    return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve(server.address().port));
    });
}

// shardcast on a port of 127.0.0.1 that it logs, secured with the test's secret and key.
async function startShardcast(binary, workdir, settings) {
    const logPath = join(workdir, "shardcast.log");
    const output = openSync(logPath, "a");
    const argv = ["--listen", "127.0.0.1:0", "--shards", "2", "-s", "log.summary_interval=0"];
    for (const setting of settings) argv.push("-s", setting);
    const child = spawn(binary, argv, { stdio: ["ignore", output, output] });
    let exited = null;
    child.on("exit", (code, signal) => (exited = signal ?? code));
    // However this test ends, the server does not outlive it.
    process.on("exit", () => exited === null && child.kill("SIGKILL"));
    const readLog = () => readFileSync(logPath, "utf8");
    const port = await waitUntil(() => {
        const match = /listening on 127\.0\.0\.1:(\d+) with \d+ shards/.exec(readLog());
        if (!match && exited !== null) {
            throw new TestFailure(`shardcast exited (${exited}) before listening:\n${readLog()}`);
        }
        return match && Number(match[1]);
    }, "shardcast to log its port");
    const stop = async () => {
        if (exited !== null) return exited;
        child.kill("SIGTERM");
        const gone = await waitUntil(() => exited !== null, "shardcast to stop", 10_000)
            .catch(() => false);
        if (!gone) child.kill("SIGKILL");
        return exited;
    };
    return { port, stop, logTail: () => readLog().split("\n").slice(-30).join("\n") };
}

// The scenario, step by step; `step` names the one running when something fails.
class Scenario {
    constructor(options, workdir) {
        this.options = options;
        this.workdir = workdir;
        this.step = "setup";
        this.probes = 0;
        this.steady = new Set();  // messages published while the page was connected
        this.cuts = { server: 0, page: 0, network: 0 };
    }

    async run() {
        const secret = randomBytes(32).toString("hex");
        this.apiKey = randomBytes(24).toString("hex");
        const secretFile = join(this.workdir, "hmac_secret");
        writeFileSync(secretFile, secret);
        this.page = await startPageServer(this.options.source, secret);
        // Leeway 0: a session whose token was not refreshed ends right at its exp (4004).
        this.shardcast = await startShardcast(this.options.shardcast, this.workdir, [
            `auth.jwt.hmac_secret_file=${secretFile}`, `auth.api_keys=${this.apiKey}`,
            `auth.allowed_origins=http://127.0.0.1:${this.page.port}`, "auth.jwt.leeway=0s",
        ]);
        this.proxy = await startProxy(this.shardcast.port);
        await this.openPage();

        for (let round = 0; round < ROUNDS; ++round) await this.round(round);
        await this.quietPhase();
        this.step = "final messages";
        await this.connected();
        await this.publishSteady(ROUNDS * 30, FINAL_STEADY);
        return this.verify(await this.snapshot());
    }

    async openPage() {
        this.step = "opening the page in Chromium";
        const { chromium } = await import("playwright-core");
        this.userDataDir = mkdtempSync(join(tmpdir(), "shardcast-chromium-"));
        this.context = await chromium.launchPersistentContext(this.userDataDir, {
            executablePath: CHROMIUM,
            headless: true,
            args: CHROMIUM_ARGS,
            viewport: { width: 760, height: 520 },
        });
        this.tab = this.context.pages()[0] ?? await this.context.newPage();
        this.pageErrors = [];
        this.tab.on("pageerror", (error) => this.pageErrors.push(String(error)));
        const query = new URLSearchParams({
            ws: `ws://127.0.0.1:${this.proxy.port}/ws`,
            messages: String(MESSAGES),
            refreshAhead: String(REFRESH_AHEAD),
        });
        await this.tab.goto(`http://127.0.0.1:${this.page.port}/?${query}`);
        log(`Chromium ${this.context.browser()?.version() ?? ""} opened the page`);
    }

    snapshot() {
        return this.tab.evaluate(() => {
            const { state, opens, closes, received, probes, offsets, resumed, gaps, errors } =
                window.e2e;
            return { state, opens, closes, received, probes, offsets, resumed, gaps, errors };
        });
    }

    async api(path, body) {
        const url = `http://127.0.0.1:${this.shardcast.port}/api/v1/${path}`;
        const response = await fetch(url, {
            method: "POST",
            headers: { Authorization: `Bearer ${this.apiKey}`, "Content-Type": "application/json" },
            body: JSON.stringify(body),
        });
        if (response.status !== 202) {
            const text = await response.text();
            throw new TestFailure(`POST /api/v1/${path}: HTTP ${response.status} ${text}`);
        }
        return (await response.json()).accepted;
    }

    publish(n) {
        return this.api("send", { to: CLIENT_ID, data: { n } });
    }

    // Until a probe published now reaches the page: then the page's current connection is
    // the session the server routes to, and what is published next goes to it.
    async connected() {
        await waitUntil(async () => {
            const probe = this.probes++;
            await this.api("send", { to: CLIENT_ID, data: { probe } });
            return waitUntil(async () => (await this.snapshot()).probes.includes(probe),
                             "a probe", 1000).catch(() => false);
        }, "the page to be connected (a probe to arrive)");
    }

    async publishSteady(first, count) {
        for (let n = first; n < first + count; ++n) {
            const accepted = await this.publish(n);
            if (accepted !== 1) {
                throw new TestFailure(`message ${n}, published while connected: ` +
                                      `accepted ${accepted}`);
            }
            this.steady.add(n);
        }
        const last = first + count - 1;
        await waitUntil(async () => (await this.snapshot()).received.includes(last),
                        `message ${last}, published while connected, to arrive`);
    }

    async round(round) {
        const first = round * 30;
        this.step = `round ${round}: connecting`;
        await this.connected();
        this.step = `round ${round}: steady`;
        await this.publishSteady(first, 10);
        this.step = `round ${round}: racing a cut`;
        for (let n = first + 10; n < first + 15; ++n) await this.publish(n);
        await this.cut(["server", "page", "network"][round % 3]);
        for (let n = first + 15; n < first + 20; ++n) await this.publish(n);
        this.step = `round ${round}: away`;
        for (let n = first + 20; n < first + 30; ++n) await this.publish(n);
    }

    async cut(how) {
        ++this.cuts[how];
        if (how === "server") {
            await this.api("disconnect", { to: CLIENT_ID, code: 4000, reason: "cut by the test" });
        } else if (how === "page") {
            await this.tab.evaluate(() => window.e2e.cutSocket());
        } else {
            this.proxy.cut();
        }
    }

    // One connection, left alone, through QUIET_REFRESHES refreshes: had one failed, the
    // server would have closed it at the token's exp (leeway 0) and the page reconnected.
    async quietPhase() {
        this.step = "quiet phase: refreshes keep the connection";
        await this.connected();
        const before = await this.snapshot();
        const tokens = this.page.stats.tokens;
        const ended = (now) => now.opens !== before.opens ||
            now.closes.length !== before.closes.length;
        await waitUntil(async () => {
            const now = await this.snapshot();
            if (ended(now)) {
                const closes = JSON.stringify(now.closes.slice(before.closes.length));
                throw new TestFailure(`the connection ended in the quiet phase: ${closes}`);
            }
            return this.page.stats.tokens >= tokens + QUIET_REFRESHES;
        }, `${QUIET_REFRESHES} token refreshes on one connection`,
        (QUIET_REFRESHES + 2) * TOKEN_TTL_S * 1000);
        this.refreshesSeen = this.page.stats.tokens - tokens;
        // The refreshed session still delivers.
        await this.connected();
        if (ended(await this.snapshot())) {
            throw new TestFailure("the connection ended after its refreshes");
        }
    }

    verify(seen) {
        this.step = "verifying";
        const problems = [];
        const resumes = seen.offsets > 0;
        const received = seen.received;
        const repeats = received.filter((n, i) => received.indexOf(n) !== i);
        if (repeats.length) {
            problems.push(`received more than once: ${[...new Set(repeats)].join(" ")}`);
        }
        const outOfOrder = received.filter((n, i) => i > 0 && n <= received[i - 1]);
        if (outOfOrder.length) problems.push(`out of order: ${outOfOrder.slice(0, 20).join(" ")}`);
        const got = new Set(received);
        const missingSteady = [...this.steady].filter((n) => !got.has(n));
        if (missingSteady.length) {
            problems.push(`published while connected, never received: ${missingSteady.join(" ")}`);
        }
        const lost = [];
        for (let n = 0; n < MESSAGES; ++n) if (!got.has(n)) lost.push(n);
        if (resumes && lost.length) {
            problems.push(`with resume, never received: ${lost.join(" ")}; ` +
                          `gaps: ${JSON.stringify(seen.gaps)}`);
        }
        // Every cut after the first message is followed by a connection that resumes.
        const cuts = this.cuts.server + this.cuts.page + this.cuts.network;
        if (resumes && seen.resumed < cuts) {
            problems.push(`${seen.resumed} connections resumed after ${cuts} cuts`);
        }
        if (!resumes && this.options.requireResume) {
            problems.push("--require-resume: the server's data frames carry no offsets");
        }
        const tokenCloses = seen.closes.filter((c) => c.code === 4004 || c.code === 4005);
        if (tokenCloses.length) problems.push(`token closes: ${JSON.stringify(tokenCloses)}`);
        if (!seen.closes.some((c) => c.code === 4000)) problems.push("no close with 4000 seen");
        if (seen.opens < cuts + 1) problems.push(`${seen.opens} connections for ${cuts} cuts`);
        if (seen.errors.length) problems.push(`client errors: ${seen.errors.join("; ")}`);
        if (this.pageErrors.length) problems.push(`page errors: ${this.pageErrors.join("; ")}`);

        const codes = {};
        for (const { code } of seen.closes) codes[code] = (codes[code] ?? 0) + 1;
        log(`connections: ${seen.opens} (${seen.resumed} resumed); closes by code: ` +
            `${JSON.stringify(codes)}; cuts: ${JSON.stringify(this.cuts)}; quiet-phase ` +
            `refreshes: ${this.refreshesSeen}; gaps: ${seen.gaps.length}`);
        if (resumes) {
            log(`resume: data frames carry offsets; checked all ${MESSAGES} messages exactly ` +
                "once, in order");
        } else {
            const around = MESSAGES - this.steady.size;
            log("resume: not available yet (no offsets in data frames): checked no repeats, " +
                `order, and all ${this.steady.size} messages published while connected; ` +
                `${lost.length} of the ${around} published around cuts were lost`);
        }
        if (problems.length) throw new TestFailure(problems.join("\n"));
        return `${received.length} of ${MESSAGES} messages over ${seen.opens} connections, ` +
            `${resumes ? "exactly once with resume" : "lenient: resume not available yet"}`;
    }

    async screenshot() {
        if (!this.tab) return;
        const path = join(this.options.out, "browser_client_test.png");
        await this.tab.screenshot({ path, fullPage: true });
        log(`screenshot: ${path}`);
    }

    async stop(passed) {
        const problems = [];
        await this.screenshot().catch((e) => problems.push(`screenshot failed: ${e}`));
        await this.context?.close().catch((e) => problems.push(`closing Chromium: ${e}`));
        if (this.shardcast) {
            const code = await this.shardcast.stop();
            if (code !== 0) problems.push(`shardcast exited with ${code}`);
            if (!passed || code !== 0) console.log(`shardcast log:\n${this.shardcast.logTail()}`);
        }
        this.proxy?.server.close();
        this.page?.server.close();
        if (this.userDataDir) rmSync(this.userDataDir, { recursive: true, force: true });
        return problems;
    }
}

async function main() {
    const { values } = parseArgs({
        options: {
            shardcast: { type: "string" },
            source: { type: "string" },
            out: { type: "string" },
            "require-resume": { type: "boolean", default: false },
        },
    });
    if (!values.shardcast || !values.source || !values.out) {
        console.error("usage: node browser_client_test.mjs --shardcast BIN --source DIR " +
                      "--out DIR [--require-resume]");
        return 2;
    }
    if (!existsSync(CHROMIUM)) {
        console.log(`SKIP: ${CHROMIUM} is missing (Debian package chromium)`);
        return SKIPPED;
    }
    mkdirSync(values.out, { recursive: true });
    const workdir = mkdtempSync(join(tmpdir(), "shardcast-browser-test-"));
    process.once("SIGTERM", () => {
        console.log("FAIL: terminated");
        process.exit(1);  // the exit handlers kill the server; playwright kills Chromium
    });
    const scenario = new Scenario({ ...values, requireResume: values["require-resume"] }, workdir);
    let failure = null;
    let summary = "";
    const giveUp = new Promise((_, reject) => {
        const timer = setTimeout(() => reject(new TestFailure(`gave up after ${GIVE_UP_MS} ms`)),
                                 GIVE_UP_MS);
        timer.unref();
    });
    try {
        summary = await Promise.race([scenario.run(), giveUp]);
    } catch (error) {
        failure = `${scenario.step}: ${error instanceof TestFailure ? error.message : error.stack}`;
    }
    const problems = await scenario.stop(failure === null);
    if (failure === null && problems.length) failure = problems.join("\n");
    if (failure === null) rmSync(workdir, { recursive: true, force: true });
    else console.log(`kept ${workdir}`);
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    console.log(failure === null ? `PASS: ${summary} (${seconds}s)` : `FAIL: ${failure}`);
    return failure === null ? 0 : 1;
}

process.exitCode = await main();
