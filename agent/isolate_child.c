#include "isolate_child.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "agent.h"
#include "config.h"
#include "crash.h"
#include "diag.h"
#include "input.h"
#include "isowire.h"
#include "plugin.h"
#include "util.h"

/* The data socket: one request at a time, from any thread. */
struct link {
    int data_fd;
    pthread_mutex_t lock;
    struct mt_buf buf; /* the message being sent (under lock) */
};

struct child {
    struct link link;
    struct mt_input_sink sink; /* the instance's env points at it */
    uv_loop_t loop;
    uv_poll_t ctl;
    bool ctl_open;
    struct mittari_ctx *ctx;
    struct mt_plugin plugin;
    uint8_t *msg; /* INIT, then what the control socket brings */
};

/* ---- the link (any thread) ---- */

/* Under lock: sends l->buf as one packet. 0 or -errno. */
static int send_buf(struct link *l)
{
    for (;;) {
        ssize_t n = send(l->data_fd, l->buf.p, l->buf.len, MSG_NOSIGNAL);
        if (n == (ssize_t)l->buf.len)
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 ? -errno : -EIO;
    }
}

/* Under lock: the answer to the request just sent. */
static int recv_reply(struct link *l, int *result)
{
    uint8_t msg[16];
    for (;;) {
        ssize_t n = recv(l->data_fd, msg, sizeof(msg), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 1 + (ssize_t)sizeof(int32_t) && msg[0] == MT_ISOWIRE_REPLY) {
            int32_t v;
            memcpy(&v, msg + 1, sizeof(v));
            *result = v;
            return 0;
        }
        return n < 0 ? -errno : -EPIPE; /* the agent is gone, or talks nonsense */
    }
}

static int link_emit(void *arg, const struct mittari_reading *r)
{
    struct link *l = arg;
    struct mittari_reading tmp;
    const struct mittari_reading *src = r;
    int result = MITTARI_ESTOPPED;

    /* "now" is when the plugin emitted, not when the agent read it */
    if (r && r->size >= MITTARI_READING_SIZE_1_0 && r->ts_us == 0) {
        memset(&tmp, 0, sizeof(tmp));
        memcpy(&tmp, r, r->size < sizeof(tmp) ? r->size : sizeof(tmp));
        tmp.ts_us = mt_now_us();
        src = &tmp;
    }
    pthread_mutex_lock(&l->lock);
    l->buf.len = 0;
    int rc = mt_isowire_put_u8(&l->buf, MT_ISOWIRE_EMIT);
    rc = rc ? rc : mt_isowire_put_reading(&l->buf, src);
    rc = rc ? rc : send_buf(l);
    rc = rc ? rc : recv_reply(l, &result);
    if (l->buf.p)
        explicit_bzero(l->buf.p, l->buf.len); /* a raw identifier */
    pthread_mutex_unlock(&l->lock);
    if (src == &tmp)
        explicit_bzero(&tmp, sizeof(tmp));
    if (rc == -ENOMEM)
        return -ENOMEM;
    return rc ? MITTARI_ESTOPPED : result;
}

static void link_health(void *arg, const char *device, int health, const char *reason)
{
    struct link *l = arg;
    pthread_mutex_lock(&l->lock);
    l->buf.len = 0;
    int rc = mt_isowire_put_u8(&l->buf, MT_ISOWIRE_HEALTH);
    rc = rc ? rc : mt_isowire_put_str(&l->buf, device, MT_ISOWIRE_TEXT_MAX);
    rc = rc ? rc : mt_isowire_put_i32(&l->buf, health);
    rc = rc ? rc : mt_isowire_put_str(&l->buf, reason, MT_ISOWIRE_TEXT_MAX);
    if (!rc)
        send_buf(l);
    pthread_mutex_unlock(&l->lock);
}

static void link_count(void *arg, const char *device, const char *counter, uint64_t n)
{
    struct link *l = arg;
    if (!counter)
        return;
    pthread_mutex_lock(&l->lock);
    l->buf.len = 0;
    int rc = mt_isowire_put_u8(&l->buf, MT_ISOWIRE_COUNT);
    rc = rc ? rc : mt_isowire_put_str(&l->buf, device, MT_ISOWIRE_TEXT_MAX);
    rc = rc ? rc : mt_isowire_put_str(&l->buf, counter, MT_ISOWIRE_TEXT_MAX);
    rc = rc ? rc : mt_isowire_put_u64(&l->buf, n);
    if (!rc)
        send_buf(l);
    pthread_mutex_unlock(&l->lock);
}

/* diag's sink: every line of this process goes to the agent's log. */
static void link_log(int level, const char *line, void *arg)
{
    struct link *l = arg;
    pthread_mutex_lock(&l->lock);
    l->buf.len = 0;
    int rc = mt_isowire_put_u8(&l->buf, MT_ISOWIRE_LOG);
    rc = rc ? rc : mt_isowire_put_i32(&l->buf, level);
    rc = rc ? rc : mt_isowire_put_str(&l->buf, line, MT_ISOWIRE_MSG_MAX - 64);
    rc = rc ? rc : send_buf(l);
    pthread_mutex_unlock(&l->lock);
    if (rc) /* the agent is gone: stderr still reaches the journal */
        fprintf(stderr, "<%d>%s\n", level, line);
}

/* A message of its own (STARTING, STARTED, FAILED, STOPPED). */
static void link_say(struct link *l, int type, int rc, const char *text)
{
    pthread_mutex_lock(&l->lock);
    l->buf.len = 0;
    int r = mt_isowire_put_u8(&l->buf, (uint8_t)type);
    if (type == MT_ISOWIRE_STARTED || type == MT_ISOWIRE_FAILED)
        r = r ? r : mt_isowire_put_i32(&l->buf, rc);
    if (type == MT_ISOWIRE_FAILED)
        r = r ? r : mt_isowire_put_str(&l->buf, text, MT_ISOWIRE_TEXT_MAX);
    if (!r)
        send_buf(l);
    pthread_mutex_unlock(&l->lock);
}

/* ---- the control socket (loop thread) ---- */

static void stopped(void *arg)
{
    struct child *ch = arg;
    ch->ctx = NULL;
    link_say(&ch->link, MT_ISOWIRE_STOPPED, 0, NULL);
    if (ch->ctl_open) {
        ch->ctl_open = false;
        uv_close((uv_handle_t *)&ch->ctl, NULL);
    }
}

static void on_ctl(uv_poll_t *h, int status, int events)
{
    struct child *ch = h->data;
    uint8_t type = 0;
    (void)events;
    ssize_t n = status < 0 ? 0 : recv(MT_ISOLATE_CTL_FD, ch->msg, MT_ISOWIRE_MSG_MAX, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n > 0)
        type = ch->msg[0];
    if (n <= 0) /* the agent is gone: nobody takes what the plugin says */
        _exit(MT_EXIT_FAILURE);
    if (type == MT_ISOWIRE_LEVEL && n == 1 + (ssize_t)sizeof(int32_t)) {
        int32_t level;
        memcpy(&level, ch->msg + 1, sizeof(level));
        mt_diag_set_level(level);
    } else if (type == MT_ISOWIRE_STOP && ch->ctx) {
        uv_poll_stop(&ch->ctl);
        mt_input_stop(ch->ctx, stopped, ch);
    }
}

/* ---- start ---- */

static void lockdown(void)
{
    /* only our two sockets: a serial port another plugin of the agent
     * opened stays the agent's */
    if (close_range(MT_ISOLATE_CTL_FD + 1, ~0U, 0) != 0)
        for (int fd = MT_ISOLATE_CTL_FD + 1; fd < 1024; fd++)
            close(fd);
    fcntl(MT_ISOLATE_DATA_FD, F_SETFD, FD_CLOEXEC);
    fcntl(MT_ISOLATE_CTL_FD, F_SETFD, FD_CLOEXEC);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    prctl(PR_SET_DUMPABLE, 0);
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
}

/* Loads the plugin file the agent loaded. 0, or a code with err. */
static int load_plugin(struct child *ch, const struct mt_isowire_init *in, char *err, size_t errlen)
{
    const struct mittari_plugin *(*entry)(void);
    struct stat st;
    char msg[512];

    if (stat(in->path, &st) != 0 || st.st_dev != in->st.st_dev || st.st_ino != in->st.st_ino ||
        st.st_size != in->st.st_size || st.st_mtim.tv_sec != in->st.st_mtim.tv_sec ||
        st.st_mtim.tv_nsec != in->st.st_mtim.tv_nsec) {
        snprintf(err, errlen,
                 "plugin %s changed on disk since the agent loaded it: restart the agent "
                 "(systemctl restart mittari) to run the new file",
                 in->path);
        return MITTARI_EPLUGIN;
    }
    ch->plugin.dl = dlopen(in->path, RTLD_NOW | RTLD_LOCAL);
    if (!ch->plugin.dl) {
        snprintf(err, errlen, "cannot load plugin %s: %s", in->path, dlerror());
        return MITTARI_EPLUGIN;
    }
    *(void **)&entry = dlsym(ch->plugin.dl, MITTARI_PLUGIN_ENTRY_SYMBOL);
    if (!entry) {
        snprintf(err, errlen, "%s has no %s", in->path, MITTARI_PLUGIN_ENTRY_SYMBOL);
        return MITTARI_EPLUGIN;
    }
    ch->plugin.desc = entry();
    int rc = mt_plugin_check_desc(ch->plugin.desc, in->plugin, msg, sizeof(msg));
    if (rc) {
        snprintf(err, errlen, "plugin %s refused: %s", in->path, msg);
        return rc;
    }
    /* INIT's buffer takes the next control message: copies */
    ch->plugin.name = strdup(in->plugin);
    ch->plugin.path = strdup(in->path);
    ch->plugin.st = st;
    if (!ch->plugin.name || !ch->plugin.path) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

/* The instance's settings from INIT, as config.c would have made them. */
static int make_conf(struct child *ch, struct mt_isowire_init *in, struct mt_inst_conf **out)
{
    const struct mittari_plugin *d = ch->plugin.desc;
    struct mt_inst_conf *ic = calloc(1, sizeof(*ic));
    int rc = -ENOMEM;

    *out = NULL;
    if (!ic)
        return -ENOMEM;
    ic->name = mt_arena_strdup(&ic->arena, in->name);
    ic->plugin = mt_arena_strdup(&ic->arena, in->plugin);
    ic->site = "";
    ic->tags_json = "";
    ic->enabled = true;
    ic->plugin_ref = &ch->plugin;
    ic->conf = mt_arena_alloc(&ic->arena, d->config_size ? d->config_size : 1);
    if (ic->name && ic->plugin && ic->conf)
        rc = mt_isowire_get_conf(&in->conf, d->options, ic->conf, &ic->arena);
    if (rc) {
        mt_inst_conf_free(ic);
        return rc;
    }
    *out = ic;
    return 0;
}

/* Reads INIT, loads the plugin, creates and starts the instance. 0 when
 * the loop is to run. */
static int begin(struct child *ch)
{
    struct mt_isowire_init in;
    struct mt_isowire_rd rd;
    struct mt_inst_conf *ic;
    char err[700];
    ssize_t n;

    do
        n = recv(MT_ISOLATE_CTL_FD, ch->msg, MT_ISOWIRE_INIT_MAX, 0);
    while (n < 0 && errno == EINTR);
    mt_isowire_rd_init(&rd, ch->msg, n > 0 ? (size_t)n : 0);
    if (n <= 0 || mt_isowire_get_init(&rd, &in))
        return -EBADMSG; /* not started by an agent */
    if (getppid() != in.agent_pid)
        return -ESRCH; /* the agent died before PR_SET_PDEATHSIG was in place */
    mt_diag_set_level(in.log_level);
    mt_diag_set_sink(link_log, &ch->link);
    struct mt_crash_conf cc = {
        .exit_status = MT_EXIT_PLUGIN,
        .then = "its process ends; the agent starts a new one after a pause, the other inputs "
                "go on",
        .packet_fd = MT_ISOLATE_DATA_FD,
        .packet_type = MT_ISOWIRE_CRASH,
    };
    mt_crash_install(&cc);
    link_say(&ch->link, MT_ISOWIRE_STARTING, 0, NULL);
    int rc = load_plugin(ch, &in, err, sizeof(err));
    if (!rc && (rc = make_conf(ch, &in, &ic)) != 0)
        snprintf(err, sizeof(err), "cannot read its settings: %s", strerror(-rc));
    if (!rc) {
        ch->sink = (struct mt_input_sink){link_emit, link_health, link_count, &ch->link};
        struct mt_input_env env = {.loop = &ch->loop, .sink = &ch->sink};
        rc = mt_input_create(&ch->ctx, &env, ic, err, sizeof(err));
    }
    if (rc) {
        link_say(&ch->link, MT_ISOWIRE_FAILED, rc, err);
        return rc;
    }
    link_say(&ch->link, MT_ISOWIRE_STARTED, mt_input_start(ch->ctx), NULL);
    return 0;
}

int mt_isolate_child_main(int argc, char **argv)
{
    struct child ch;
    int rc;

    (void)argc;
    (void)argv;
    lockdown();
    memset(&ch, 0, sizeof(ch));
    ch.link.data_fd = MT_ISOLATE_DATA_FD;
    pthread_mutex_init(&ch.link.lock, NULL);
    ch.msg = malloc(MT_ISOWIRE_INIT_MAX);
    if (!ch.msg || uv_loop_init(&ch.loop))
        return MT_EXIT_FAILURE;
    rc = begin(&ch);
    if (!rc) {
        uv_poll_init(&ch.loop, &ch.ctl, MT_ISOLATE_CTL_FD);
        ch.ctl.data = &ch;
        ch.ctl_open = true;
        uv_poll_start(&ch.ctl, UV_READABLE | UV_DISCONNECT, on_ctl);
        uv_run(&ch.loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&ch.loop);
    mt_diag_set_sink(NULL, NULL);
    if (ch.plugin.dl)
        dlclose(ch.plugin.dl);
    free(ch.plugin.name);
    free(ch.plugin.path);
    free(ch.msg);
    mt_buf_free(&ch.link.buf);
    pthread_mutex_destroy(&ch.link.lock);
    return rc == -EBADMSG || rc == -ESRCH ? MT_EXIT_USAGE : MT_EXIT_OK;
}
