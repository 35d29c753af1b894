/*
 * isowire: the messages between the agent and the process of an isolated
 * input (isolate.h is the agent's side, isolate_child.h the child's) and
 * their encoding. One message per packet of a SOCK_SEQPACKET socketpair:
 * a type byte, then the fields in host byte order (both ends are the same
 * binary on the same machine). Strings carry their length and a NUL.
 *
 * Two sockets per child: the control socket carries INIT and STOP from the
 * agent; the data socket carries everything the child says (in order: the
 * readings, logs, health and counters of its plugin, then STOPPED or
 * CRASH) and the agent's REPLY to each EMIT.
 *
 * Decoding is defensive: the agent reads what a plugin's process wrote, so
 * every length is checked against the packet and a malformed packet is an
 * error (the agent ends that child), never a crash. Raw subject
 * identifiers travel only over this socketpair, in memory; buffers that
 * held one are wiped (isolate.h says why the child does not pseudonymise).
 *
 * Any thread; no state.
 */
#ifndef MT_ISOWIRE_H
#define MT_ISOWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <mittari/mittari.h>

#include "util.h"

enum mt_isowire_type {
    /* agent -> child, control socket */
    MT_ISOWIRE_INIT = 1,  /* the instance: plugin file, names, log level, its options */
    MT_ISOWIRE_STOP = 2,  /* stop the plugin, destroy it and end */
    MT_ISOWIRE_LEVEL = 4, /* int32: the agent's log level changed (a reload) */
    /* agent -> child, data socket */
    MT_ISOWIRE_REPLY = 3, /* int32: what emit returned */
    /* child -> agent, data socket */
    MT_ISOWIRE_EMIT = 10,     /* a reading; answered by one REPLY */
    MT_ISOWIRE_LOG = 11,      /* level, one line (already prefixed by its module) */
    MT_ISOWIRE_HEALTH = 12,   /* device or none, health, reason or none */
    MT_ISOWIRE_COUNT = 13,    /* device or none, counter, n */
    MT_ISOWIRE_STARTING = 14, /* the plugin was created; start() runs next */
    MT_ISOWIRE_STARTED = 15,  /* int32: what start() returned */
    MT_ISOWIRE_FAILED = 16,   /* int32, text: the plugin could not be loaded or created */
    MT_ISOWIRE_STOPPED = 17,  /* stop() and destroy() ran; the process ends */
    MT_ISOWIRE_CRASH = 18,    /* text (the rest of the packet): crash.c's report */
};

/* The largest packet either side sends but INIT, and INIT's limit: an
 * instance whose options take more is refused by mittari check (a packet
 * must fit a socket's default send buffer). */
#define MT_ISOWIRE_MSG_MAX 65536
#define MT_ISOWIRE_INIT_MAX 131072
/* Strings of a reading are cut at this length: every field the agent
 * accepts is far shorter, so the cut never turns a refused reading into
 * an accepted one. */
#define MT_ISOWIRE_TEXT_MAX 1024

/* A reader over one packet. bad is set at the first field that does not
 * fit; every getter then returns zero or NULL. */
struct mt_isowire_rd {
    const uint8_t *p;
    size_t len, off;
    bool bad;
};

void mt_isowire_rd_init(struct mt_isowire_rd *r, const void *p, size_t len);
uint8_t mt_isowire_get_u8(struct mt_isowire_rd *r);
int32_t mt_isowire_get_i32(struct mt_isowire_rd *r);
uint32_t mt_isowire_get_u32(struct mt_isowire_rd *r);
int64_t mt_isowire_get_i64(struct mt_isowire_rd *r);
uint64_t mt_isowire_get_u64(struct mt_isowire_rd *r);
double mt_isowire_get_f64(struct mt_isowire_rd *r);
/* A string written by mt_isowire_put_str, pointing into the packet; NULL for
 * a NULL string (and on error: check bad). */
const char *mt_isowire_get_str(struct mt_isowire_rd *r);
/* n bytes, pointing into the packet. */
const void *mt_isowire_get_bytes(struct mt_isowire_rd *r, size_t n);

/* Writers append to an mt_buf; 0 or -ENOMEM (the buffer stays valid). */
int mt_isowire_put_u8(struct mt_buf *b, uint8_t v);
int mt_isowire_put_i32(struct mt_buf *b, int32_t v);
int mt_isowire_put_u32(struct mt_buf *b, uint32_t v);
int mt_isowire_put_i64(struct mt_buf *b, int64_t v);
int mt_isowire_put_u64(struct mt_buf *b, uint64_t v);
int mt_isowire_put_f64(struct mt_buf *b, double v);
/* At most max bytes of s (NULL is kept apart from ""). */
int mt_isowire_put_str(struct mt_buf *b, const char *s, size_t max);

/* A reading as EMIT carries it. The child writes what the plugin passed,
 * reading every field only as far as its declared size and the agent's
 * limits allow (tags beyond 8, subject bytes beyond 64 are not read: the
 * agent refuses such a reading on their declared numbers alone). */
int mt_isowire_put_reading(struct mt_buf *b, const struct mittari_reading *r);

/* A decoded reading: r points into the packet and into tags. */
struct mt_isowire_reading {
    struct mittari_reading r;
    struct mittari_tag tags[8];
};
/* 0, or -EBADMSG when the packet does not hold one reading exactly. */
int mt_isowire_get_reading(struct mt_isowire_rd *rd, struct mt_isowire_reading *out);

/* A filled option struct (the table's types, lists recursively), so the
 * child gets the values the agent validated, not text to parse again. */
int mt_isowire_put_conf(struct mt_buf *b, const struct mittari_option *table, const void *conf);
/* Fills conf (zeroed, of the table's size) from the reader; strings and
 * lists are allocated in arena. 0, -EBADMSG or -ENOMEM. */
int mt_isowire_get_conf(struct mt_isowire_rd *rd, const struct mittari_option *table, void *conf,
                        struct mt_arena *arena);

/* What INIT says. */
struct mt_isowire_init {
    const char *path; /* the plugin file */
    const char *plugin;
    const char *name;   /* the instance */
    const char *module; /* its log prefix: "input crashy[boom]" */
    int log_level;
    int32_t agent_pid;
    struct stat st;            /* the file as the agent loaded it: dev, ino, size, mtime */
    struct mt_isowire_rd conf; /* the options, for mt_isowire_get_conf */
};
int mt_isowire_put_init(struct mt_buf *b, const char *path, const struct stat *st,
                        const char *plugin, const char *name, const char *module, int log_level,
                        const struct mittari_option *table, const void *conf);
int mt_isowire_get_init(struct mt_isowire_rd *rd, struct mt_isowire_init *out);

#endif
