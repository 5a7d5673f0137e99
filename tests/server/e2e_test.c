/*
 * e2e_test.c — `aisle serve` as a real process, driven by OpenAI's official
 * Node library (tests/e2e/openai_client.mjs): streaming and non-streaming chat
 * and completions, usage, and error objects as the library parses them. Also
 * checks that SIGTERM stops the server cleanly (exit status 0) and that
 * `aisle serve --help` exists.
 *
 * Needs node and npm (scripts/install-deps.sh installs them); the `openai`
 * package is installed with `npm ci --prefix tests/e2e` (package-lock.json)
 * when tests/e2e/node_modules lacks it.
 */
#include <criterion/criterion.h>

#include "../testutil.h"
#include "tinymodel.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t n = sizeof(a);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &n), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static int can_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

Test(e2e, serve_help)
{
    char *out;
    cr_assert_eq(tu_run(&out, "'%s' serve --help", tu_aisle()), 0);
    cr_assert_not_null(strstr(out, "--parallel"));
    cr_assert_not_null(strstr(out, "--policy"));
    free(out);
    cr_assert_eq(tu_run(&out, "'%s' serve --model /nonexistent.gguf --port 0", tu_aisle()), 1);
    cr_assert_not_null(strstr(out, "/nonexistent.gguf"), "%s", out);
    free(out);
    cr_assert_eq(tu_run(&out, "'%s' serve --model x --policy fastest", tu_aisle()), 2);
    cr_assert_not_null(strstr(out, "--policy"), "%s", out);
    free(out);
}

Test(e2e, openai_node_client, .timeout = 600)
{
    char *dir = tu_tmpdir(), *model = tu_path(dir, "tiny.gguf"), *log = tu_path(dir, "serve.log");
    struct tiny_spec ts = {.dim = 64, .layers = 2, .heads = 4, .kv_heads = 2, .ff = 128, .vocab = 512, .ctx = 512,
                           .wtype = GGML_TYPE_F32, .seed = 11};
    cr_assert_eq(tiny_model_write(model, &ts), 0);

    char *out;
    cr_assert_eq(tu_run(&out, "node --version && npm --version"), 0, "node and npm are needed: %s", out);
    free(out);
    char nm[1024];
    snprintf(nm, sizeof(nm), "%s/tests/e2e/node_modules/openai/package.json", tu_root());
    if (access(nm, R_OK) != 0) {
        /* Under a lock: chat_test.c's browser tests install into the same node_modules. */
        int rc = tu_run(&out,
                        "cd '%s' && flock /tmp/aisle-e2e-npm.lock sh -c 'test -f "
                        "tests/e2e/node_modules/openai/package.json || npm ci --prefix tests/e2e --no-audit --no-fund'",
                        tu_root());
        cr_assert_eq(rc, 0, "npm ci failed: %s", out);
        free(out);
    }

    int port = free_port();
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        char ps[16];
        snprintf(ps, sizeof(ps), "%d", port);
        execl(tu_aisle(), tu_aisle(), "serve", "--model", model, "--name", "tiny-shop", "--port", ps, "--threads",
              "1", "--parallel", "4", (char *)NULL);
        _exit(127);
    }
    int up = 0;
    for (int i = 0; i < 300 && !up; i++) {
        struct timespec t = {0, 20000000};
        nanosleep(&t, NULL);
        up = can_connect(port);
    }
    cr_assert(up, "aisle serve did not start listening on port %d", port);

    int rc = tu_run(&out, "cd '%s' && node tests/e2e/openai_client.mjs http://127.0.0.1:%d/v1 tiny-shop", tu_root(),
                    port);
    kill(pid, SIGTERM);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert_eq(rc, 0, "the OpenAI client failed:\n%s", out);
    static const char *const checks[] = {"ok models", "ok chat\n", "ok chat-stream", "ok completion", "ok errors",
                                         "all ok"};
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++)
        cr_assert_not_null(strstr(out, checks[i]), "no '%s' in:\n%s", checks[i], out);
    free(out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "aisle serve did not stop cleanly on SIGTERM (status %d)", st);
    free(model);
    free(log);
    tu_rmdir(dir);
}
