/*
 * np_sample: a C program speaking the imgserver protocol through libnetproto.so.
 *
 *   np_sample selftest                 in-memory client and server: handshake, login, ping,
 *                                      a chunked job, a wrong password refused, a PROBE, and the
 *                                      connections' timers driven by a clock it moves itself
 *   np_sample ping HOST:PORT USER      handshake + login + ping against a running imgserver
 *                                      (password from $IMGCLIENT_PASSWORD)
 *
 * Exits 0 on success; prints one line per step.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netproto.h"

/* The time every np_conn call below is made at, in microseconds on CLOCK_MONOTONIC (the clock
 * np_clock_now_us() reads). The self-test starts it from the real clock and then moves it by
 * hand, so the timers fire exactly when it says, without sleeping. */
static uint64_t now_us;

static int fail(const char *what, np_status s) {
    char msg[512];
    size_t len = 0;
    if (np_last_error(msg, sizeof msg, &len) != NP_OK) msg[0] = 0;
    fprintf(stderr, "np_sample: %s: %s (%u): %s\n", what, np_status_str(s), (unsigned)s, msg);
    return 1;
}

#define CHECK(what, call)                         \
    do {                                          \
        np_status s_ = (call);                    \
        if (s_ != NP_OK) return fail(what, s_);   \
    } while (0)

/* Moves everything `from` wants to send into `to`. */
static int pump(np_conn *from, np_conn *to) {
    const uint8_t *data;
    size_t len, used;
    CHECK("pending_output", np_conn_pending_output(from, &data, &len));
    CHECK("feed", np_conn_feed(to, data, len, now_us, &used));
    if (used != len) return fail("feed took less than offered", NP_INPUT_FULL);
    CHECK("consume_output", np_conn_consume_output(from, len, now_us));
    return 0;
}

/* Polls one event of the expected kind. */
static int expect(np_conn *c, np_event_kind kind, np_event *ev, const char *what) {
    np_status s = np_conn_poll_event(c, ev);
    if (s != NP_OK) return fail(what, s);
    if (ev->kind != kind) {
        fprintf(stderr, "np_sample: %s: got event kind %u, wanted %u\n", what, (unsigned)ev->kind, (unsigned)kind);
        return 1;
    }
    return 0;
}

static int no_event(np_conn *c, const char *what) {
    np_event ev;
    np_status s = np_conn_poll_event(c, &ev);
    if (s != NP_NO_EVENT) return fail(what, s == NP_OK ? NP_BAD_STATE : s);
    return 0;
}

/* Handshake and login between two in-memory connections; returns 0 when both are ready,
 * 2 when the server refused the login. */
static int login(np_conn *cli, np_conn *srv) {
    np_event ev;
    if (pump(cli, srv) || no_event(srv, "server after HELLO")) return 1;
    if (pump(srv, cli) || expect(cli, NP_EVENT_SERVER_KEY, &ev, "client after HELLO_REPLY")) return 1;
    char fp[128];
    CHECK("fingerprint", np_key_fingerprint(ev.server_key, fp, sizeof fp, NULL));
    printf("server key %s\n", fp);
    CHECK("trust", np_conn_trust_server_key(cli, true));
    if (pump(cli, srv) || no_event(srv, "server after LOGIN_START")) return 1;
    if (pump(srv, cli) || no_event(cli, "client after CHALLENGE")) return 1;
    if (pump(cli, srv)) return 1;
    np_status s = np_conn_poll_event(srv, &ev);
    if (s == NP_AUTH_FAILED) {
        if (pump(srv, cli)) return 1;
        if (expect(cli, NP_EVENT_ERROR, &ev, "client after refusal")) return 1;
        printf("login refused: error %u (%s): %.*s\n", ev.code, np_error_code_name((uint16_t)ev.code),
               (int)ev.text_len, (const char *)ev.text);
        return np_conn_is_closed(cli) ? 2 : 1;
    }
    if (s != NP_OK || ev.kind != NP_EVENT_LOGGED_IN) return fail("server after PROOF", s);
    printf("server: user %.*s logged in\n", (int)ev.text_len, (const char *)ev.text);
    if (pump(srv, cli) || expect(cli, NP_EVENT_READY, &ev, "client after LOGIN_OK")) return 1;
    return np_conn_is_ready(cli) && np_conn_is_ready(srv) ? 0 : 1;
}

/* Expects `np_conn_handle_timeout` at `at` to report `want`. */
static int fire(np_conn *c, uint64_t at, np_timer want, const char *what) {
    np_timer fired = NP_TIMER_NONE;
    CHECK(what, np_conn_handle_timeout(c, at, &fired));
    if (fired != want) {
        fprintf(stderr, "np_sample: %s: timer %u fired, wanted %u\n", what, (unsigned)fired, (unsigned)want);
        return 1;
    }
    return 0;
}

/* The connections' own timers, on a clock this program moves: a server connection that never
 * completes its handshake is closed with HANDSHAKE_TIMEOUT exactly at its deadline, and a
 * logged-in client sends its heartbeat PING when its interval has passed. */
static int timers(np_server_config *scfg) {
    np_client_config *ccfg;
    CHECK("client_config_new", np_client_config_new("alice", (const uint8_t *)"s3cret", 6, &ccfg));
    CHECK("set_timers", np_client_config_set_timers(ccfg, 1000, 0)); /* heartbeat 1 s, no dead-peer */

    /* Handshake timer: a peer that connects and never completes the handshake (its HELLO is
     * never delivered). */
    np_conn *cli, *srv;
    CHECK("conn_new_client", np_conn_new_client(ccfg, now_us, &cli));
    CHECK("conn_new_server", np_conn_new_server(scfg, now_us, &srv));
    uint64_t deadline;
    CHECK("poll_timeout", np_conn_poll_timeout(srv, &deadline));
    if (deadline != now_us + 10 * 1000 * 1000) return fail("handshake deadline is not 10 s", NP_BAD_STATE);
    if (no_event(srv, "server before HELLO")) return 1;
    if (fire(srv, deadline - 1, NP_TIMER_NONE, "handle_timeout before the deadline")) return 1;
    if (np_conn_is_closed(srv)) return fail("closed before its deadline", NP_BAD_STATE);
    if (fire(srv, deadline, NP_TIMER_HANDSHAKE, "handle_timeout at the deadline")) return 1;
    if (!np_conn_is_closed(srv)) return fail("not closed after the handshake timeout", NP_BAD_STATE);
    np_event ev;
    now_us = deadline;
    if (pump(srv, cli)) return 1;
    np_status s = np_conn_poll_event(cli, &ev);
    if (s != NP_OK || ev.kind != NP_EVENT_ERROR) return fail("client after HANDSHAKE_TIMEOUT", s);
    if (ev.code != NP_ERROR_HANDSHAKE_TIMEOUT) return fail("error code after the handshake timer", NP_MALFORMED);
    printf("handshake timer: fired at +10 s, client got error %u (%s)\n", ev.code,
           np_error_code_name((uint16_t)ev.code));
    np_conn_free(cli);
    np_conn_free(srv);

    /* Heartbeat timer: a logged-in client that has heard nothing for 1 s pings. */
    CHECK("conn_new_client", np_conn_new_client(ccfg, now_us, &cli));
    CHECK("conn_new_server", np_conn_new_server(scfg, now_us, &srv));
    if (login(cli, srv) != 0) return 1;
    CHECK("poll_timeout", np_conn_poll_timeout(cli, &deadline));
    if (deadline != now_us + 1000 * 1000) return fail("heartbeat deadline is not 1 s", NP_BAD_STATE);
    if (fire(cli, deadline - 1, NP_TIMER_NONE, "heartbeat before its time")) return 1;
    now_us = deadline;
    if (fire(cli, now_us, NP_TIMER_HEARTBEAT, "heartbeat at its time")) return 1;
    if (pump(cli, srv) || expect(srv, NP_EVENT_PING, &ev, "server after heartbeat")) return 1;
    if (ev.request_id != 0) return fail("heartbeat request id", NP_MALFORMED);
    if (pump(srv, cli) || expect(cli, NP_EVENT_PONG, &ev, "client pong to heartbeat")) return 1;
    printf("heartbeat timer: PING id 0 at +1 s, answered\n");
    np_conn_free(cli);
    np_conn_free(srv);
    np_client_config_free(ccfg);
    return 0;
}

static int selftest(void) {
    now_us = np_clock_now_us();
    char dir[] = "/tmp/np_sample.XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char key_path[256];
    snprintf(key_path, sizeof key_path, "%s/server.key", dir);

    np_server_params params = {.max_chunk = NP_MAX_CHUNK_DATA, .max_upload = 1 << 20, .max_in_flight = 4};
    np_server_config *scfg;
    bool created;
    uint8_t pub[32];
    CHECK("server_config_new", np_server_config_new(key_path, &params, &scfg, &created, pub));
    printf("server key file %s (created: %s)\n", key_path, created ? "yes" : "no");

    char verifier[256];
    const char *pw = "s3cret";
    CHECK("verifier_create", np_verifier_create((const uint8_t *)pw, strlen(pw), 4096, verifier, sizeof verifier, NULL));
    if (strstr(verifier, pw)) return fail("verifier contains the password", NP_INVALID_ARGUMENT);
    CHECK("add_user", np_server_config_add_user(scfg, "alice", verifier));

    /* Right password. */
    np_client_config *ccfg;
    CHECK("client_config_new", np_client_config_new("alice", (const uint8_t *)pw, strlen(pw), &ccfg));
    np_conn *cli, *srv;
    CHECK("conn_new_client", np_conn_new_client(ccfg, now_us, &cli));
    CHECK("conn_new_server", np_conn_new_server(scfg, now_us, &srv));
    if (login(cli, srv) != 0) return 1;
    /* Users cannot be added once connections share the config. */
    if (np_server_config_add_user(scfg, "bob", verifier) != NP_BAD_STATE) return fail("add_user after use", NP_OK);

    np_event ev;
    CHECK("send_ping", np_conn_send_ping(cli, 1, (const uint8_t *)"hello", 5));
    if (pump(cli, srv) || expect(srv, NP_EVENT_PING, &ev, "server ping")) return 1;
    if (pump(srv, cli) || expect(cli, NP_EVENT_PONG, &ev, "client pong")) return 1;
    if (ev.data_len != 5 || memcmp(ev.data, "hello", 5) != 0) return fail("pong payload", NP_MALFORMED);
    printf("ping: pong \"%.*s\"\n", (int)ev.data_len, (const char *)ev.data);

    /* A 100 000-byte job in two chunks, answered by a result. */
    static uint8_t input[100000];
    for (size_t i = 0; i < sizeof input; i++) input[i] = (uint8_t)(i * 7);
    CHECK("send_job", np_conn_send_job(cli, 2, "blur:2", sizeof input, input, NP_MAX_CHUNK_DATA, false));
    CHECK("send_job_data",
          np_conn_send_job_data(cli, 2, input + NP_MAX_CHUNK_DATA, sizeof input - NP_MAX_CHUNK_DATA, true));
    if (pump(cli, srv) || expect(srv, NP_EVENT_JOB_SUBMIT, &ev, "job submit")) return 1;
    size_t got = ev.data_len;
    int same = ev.total_len == sizeof input && ev.text_len == 6 && memcmp(ev.text, "blur:2", 6) == 0 &&
               memcmp(ev.data, input, ev.data_len) == 0;
    if (expect(srv, NP_EVENT_JOB_DATA, &ev, "job data")) return 1;
    same = same && ev.last && memcmp(ev.data, input + got, ev.data_len) == 0;
    got += ev.data_len;
    if (!same || got != sizeof input) return fail("job bytes differ", NP_MALFORMED);
    printf("job: %zu bytes in 2 chunks, spec blur:2\n", got);
    np_result_info info = {.total_len = 3, .width = 1, .height = 1, .format = 1};
    CHECK("send_result", np_conn_send_result(srv, 2, &info, (const uint8_t *)"out", 3, true));
    if (pump(srv, cli) || expect(cli, NP_EVENT_JOB_RESULT, &ev, "job result")) return 1;
    if (!ev.last || ev.data_len != 3 || ev.info.width != 1) return fail("result", NP_MALFORMED);
    printf("result: %zu bytes, %ux%u\n", ev.data_len, ev.info.width, ev.info.height);

    /* Stats. */
    const char *names[] = {"jobs_ok", "connections"};
    uint64_t values[] = {1, 1};
    CHECK("stats_request", np_conn_send_stats_request(cli, 3));
    if (pump(cli, srv) || expect(srv, NP_EVENT_STATS_REQUEST, &ev, "stats request")) return 1;
    CHECK("send_stats", np_conn_send_stats(srv, 3, names, values, 2));
    if (pump(srv, cli) || expect(cli, NP_EVENT_STATS, &ev, "stats")) return 1;
    size_t off = 0;
    char name[64];
    uint64_t v;
    int n = 0;
    while (np_stats_next(ev.data, ev.data_len, &off, name, sizeof name, &v) == NP_OK) {
        printf("stat %s = %llu\n", name, (unsigned long long)v);
        n++;
    }
    if (n != 2) return fail("stats count", NP_MALFORMED);
    /* Wire error codes and statuses arrive as plain integers: unknown ones are answered safely. */
    if (!np_error_code_is_retryable(NP_ERROR_TIMEOUT) || np_error_code_is_retryable(NP_ERROR_BAD_SPEC) ||
        np_error_code_name(9999) != NULL || strcmp(np_status_str(77777), "unknown status") != 0)
        return fail("error code table", NP_MALFORMED);
    np_conn_free(cli);
    np_conn_free(srv);
    np_client_config_free(ccfg);

    /* Wrong password: refused with AUTH_FAILED. */
    CHECK("client_config_new", np_client_config_new("alice", (const uint8_t *)"guess", 5, &ccfg));
    CHECK("conn_new_client", np_conn_new_client(ccfg, now_us, &cli));
    CHECK("conn_new_server", np_conn_new_server(scfg, now_us, &srv));
    if (login(cli, srv) != 2) return fail("wrong password was not refused", NP_AUTH_FAILED);
    np_conn_free(cli);
    np_conn_free(srv);
    np_client_config_free(ccfg);

    /* PROBE: the fixed request, answered by a server connection told "ready", then closed. */
    {
        uint8_t probe[NP_PROBE_LEN];
        size_t probe_len = 0, used = 0, reply_len = 0;
        const uint8_t *reply;
        uint32_t status = 0;
        np_event pev;
        CHECK("probe_request", np_probe_request(probe, sizeof probe, &probe_len));
        if (np_probe_request(probe, NP_PROBE_LEN - 1, &probe_len) != NP_BUFFER_TOO_SMALL)
            return fail("probe buffer check", NP_OK);
        CHECK("conn_new_server", np_conn_new_server(scfg, now_us, &srv));
        if (np_conn_set_probe_status(srv, 77) != NP_INVALID_ARGUMENT) return fail("probe status check", NP_OK);
        CHECK("set_probe_status", np_conn_set_probe_status(srv, NP_PROBE_READY));
        CHECK("feed probe", np_conn_feed(srv, probe, probe_len, now_us, &used));
        if (expect(srv, NP_EVENT_PROBE, &pev, "probe event")) return 1;
        if (pev.code != NP_PROBE_READY || !np_conn_is_closed(srv)) return fail("probe answer", NP_BAD_STATE);
        CHECK("pending_output", np_conn_pending_output(srv, &reply, &reply_len));
        if (reply_len != NP_PROBE_REPLY_LEN) return fail("probe reply length", NP_MALFORMED);
        if (np_probe_parse(reply, reply_len - 1, &status) != NP_NO_EVENT) return fail("partial probe reply", NP_OK);
        CHECK("probe_parse", np_probe_parse(reply, reply_len, &status));
        if (status != NP_PROBE_READY) return fail("probe status", NP_MALFORMED);
        printf("probe: ready\n");
        np_conn_free(srv);
    }

    /* Argument checks: NULL pointers are errors, not crashes. */
    if (np_conn_feed(NULL, NULL, 0, now_us, NULL) != NP_NULL_ARGUMENT) return fail("NULL check", NP_OK);

    if (timers(scfg) != 0) return 1;

    np_server_config_free(scfg);
    unlink(key_path);
    rmdir(dir);
    printf("selftest: ok (libnetproto %s)\n", np_version());
    return 0;
}

static int ping(const char *addr, const char *user) {
    const char *pw = getenv("IMGCLIENT_PASSWORD");
    if (!pw) {
        fprintf(stderr, "np_sample: set IMGCLIENT_PASSWORD\n");
        return 2;
    }
    const char *known = getenv("NP_SAMPLE_KNOWN_SERVERS");
    np_client_config *cfg;
    CHECK("client_config_new", np_client_config_new(user, (const uint8_t *)pw, strlen(pw), &cfg));
    np_client *c;
    bool is_new;
    CHECK("connect", np_client_connect(addr, cfg, known, 5000, &c, &is_new));
    uint8_t key[32];
    char fp[128];
    CHECK("server_key", np_client_server_key(c, key));
    CHECK("fingerprint", np_key_fingerprint(key, fp, sizeof fp, NULL));
    printf("connected to %s as %s, server key %s%s\n", addr, user, fp, is_new ? " (new, pinned)" : "");
    CHECK("send_ping", np_client_send_ping(c, 1, (const uint8_t *)"c-sample", 8, 5000));
    np_event ev;
    do {
        CHECK("next_event", np_client_next_event(c, 5000, &ev));
    } while (ev.kind == NP_EVENT_PING);
    if (ev.kind != NP_EVENT_PONG || ev.data_len != 8 || memcmp(ev.data, "c-sample", 8) != 0)
        return fail("expected PONG", NP_UNEXPECTED_MESSAGE);
    printf("ping: pong \"%.*s\"\n", (int)ev.data_len, (const char *)ev.data);
    np_client_close(c);
    np_client_config_free(cfg);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "selftest") == 0) return selftest();
    if (argc == 4 && strcmp(argv[1], "ping") == 0) return ping(argv[2], argv[3]);
    fprintf(stderr, "usage: np_sample selftest | np_sample ping HOST:PORT USER\n");
    return 2;
}
