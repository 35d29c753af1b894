#include "isowire.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define NO_STRING 0xffffffffu
#define MAX_TAGS 8
#define MAX_SUBJECT 64
#define MAX_LIST_DEPTH 8

/* ---- reading a packet ---- */

void mt_isowire_rd_init(struct mt_isowire_rd *r, const void *p, size_t len)
{
    r->p = p;
    r->len = len;
    r->off = 0;
    r->bad = false;
}

const void *mt_isowire_get_bytes(struct mt_isowire_rd *r, size_t n)
{
    if (r->bad || n > r->len - r->off) {
        r->bad = true;
        return NULL;
    }
    const void *p = r->p + r->off;
    r->off += n;
    return p;
}

#define GETTER(name, type)                                                                         \
    type name(struct mt_isowire_rd *r)                                                             \
    {                                                                                              \
        type v = 0;                                                                                \
        const void *p = mt_isowire_get_bytes(r, sizeof(v));                                        \
        if (p)                                                                                     \
            memcpy(&v, p, sizeof(v));                                                              \
        return v;                                                                                  \
    }
GETTER(mt_isowire_get_u8, uint8_t)
GETTER(mt_isowire_get_i32, int32_t)
GETTER(mt_isowire_get_u32, uint32_t)
GETTER(mt_isowire_get_i64, int64_t)
GETTER(mt_isowire_get_u64, uint64_t)
GETTER(mt_isowire_get_f64, double)
#undef GETTER

const char *mt_isowire_get_str(struct mt_isowire_rd *r)
{
    uint32_t n = mt_isowire_get_u32(r);
    if (r->bad || n == NO_STRING)
        return NULL;
    const char *s = mt_isowire_get_bytes(r, (size_t)n + 1);
    if (!s || s[n] != 0 || memchr(s, 0, n)) {
        r->bad = true;
        return NULL;
    }
    return s;
}

/* ---- writing one ---- */

int mt_isowire_put_u8(struct mt_buf *b, uint8_t v)
{
    return mt_buf_add(b, &v, sizeof(v));
}

int mt_isowire_put_i32(struct mt_buf *b, int32_t v)
{
    return mt_buf_add(b, &v, sizeof(v));
}

int mt_isowire_put_u32(struct mt_buf *b, uint32_t v)
{
    return mt_buf_add(b, &v, sizeof(v));
}

int mt_isowire_put_i64(struct mt_buf *b, int64_t v)
{
    return mt_buf_add(b, &v, sizeof(v));
}

int mt_isowire_put_u64(struct mt_buf *b, uint64_t v)
{
    return mt_buf_add(b, &v, sizeof(v));
}

int mt_isowire_put_f64(struct mt_buf *b, double v)
{
    return mt_buf_add(b, &v, sizeof(v));
}

int mt_isowire_put_str(struct mt_buf *b, const char *s, size_t max)
{
    if (!s)
        return mt_isowire_put_u32(b, NO_STRING);
    size_t n = strnlen(s, max);
    int rc = mt_isowire_put_u32(b, (uint32_t)n);
    rc = rc ? rc : mt_buf_add(b, s, n);
    return rc ? rc : mt_isowire_put_u8(b, 0);
}

/* ---- readings ---- */

static bool has_source(const struct mittari_reading *r)
{
    return r->size >= MITTARI_READING_SIZE_1_0 + sizeof(r->source);
}

int mt_isowire_put_reading(struct mt_buf *b, const struct mittari_reading *r)
{
    int rc = 0;
    uint32_t size = r ? r->size : 0;

    rc = mt_isowire_put_u32(b, size);
    if (rc || size < MITTARI_READING_SIZE_1_0)
        return rc; /* refused for its size alone: nothing else is read */
    rc = rc ? rc : mt_isowire_put_i64(b, r->ts_us);
    rc = rc ? rc : mt_isowire_put_i32(b, r->kind);
    rc = rc ? rc : mt_isowire_put_f64(b, r->value);
    rc = rc ? rc : mt_isowire_put_u64(b, r->counter);
    rc = rc ? rc : mt_isowire_put_u32(b, r->counter_bits);
    rc = rc ? rc : mt_isowire_put_str(b, r->device, MT_ISOWIRE_TEXT_MAX);
    rc = rc ? rc : mt_isowire_put_str(b, r->metric, MT_ISOWIRE_TEXT_MAX);
    rc = rc ? rc : mt_isowire_put_str(b, r->unit, MT_ISOWIRE_TEXT_MAX);
    rc = rc ? rc : mt_isowire_put_str(b, has_source(r) ? r->source : NULL, MT_ISOWIRE_TEXT_MAX);
    rc = rc ? rc : mt_isowire_put_str(b, r->subject_space, MT_ISOWIRE_TEXT_MAX);
    /* the subject: its declared length, and its bytes when the agent
     * would read them (1 to 64) */
    bool subj = r->subject_id && r->subject_id_len >= 1 && r->subject_id_len <= MAX_SUBJECT;
    rc = rc ? rc : mt_isowire_put_u64(b, r->subject_id ? r->subject_id_len : 0);
    rc = rc ? rc : mt_isowire_put_u8(b, r->subject_id != NULL);
    if (subj)
        rc = rc ? rc : mt_buf_add(b, r->subject_id, r->subject_id_len);
    /* tags: the declared number, and the tags when there are at most 8 */
    bool tags = r->tags && r->ntags <= MAX_TAGS;
    rc = rc ? rc : mt_isowire_put_u64(b, r->ntags);
    rc = rc ? rc : mt_isowire_put_u8(b, r->tags != NULL);
    for (size_t i = 0; tags && i < r->ntags && !rc; i++) {
        rc = mt_isowire_put_str(b, r->tags[i].key, MT_ISOWIRE_TEXT_MAX);
        rc = rc ? rc : mt_isowire_put_str(b, r->tags[i].value, MT_ISOWIRE_TEXT_MAX);
    }
    return rc;
}

int mt_isowire_get_reading(struct mt_isowire_rd *rd, struct mt_isowire_reading *out)
{
    struct mittari_reading *r = &out->r;
    static const uint8_t none = 0;

    memset(out, 0, sizeof(*out));
    uint32_t size = mt_isowire_get_u32(rd);
    /* the agent's reading is always whole; a smaller declared size keeps
     * what it means in-process: no source, or refused outright */
    r->size = size < MITTARI_READING_SIZE_1_0 ? size : (uint32_t)sizeof(*r);
    if (rd->bad)
        return -EBADMSG;
    if (size < MITTARI_READING_SIZE_1_0)
        return rd->off == rd->len ? 0 : -EBADMSG;
    r->ts_us = mt_isowire_get_i64(rd);
    r->kind = mt_isowire_get_i32(rd);
    r->value = mt_isowire_get_f64(rd);
    r->counter = mt_isowire_get_u64(rd);
    r->counter_bits = mt_isowire_get_u32(rd);
    r->device = mt_isowire_get_str(rd);
    r->metric = mt_isowire_get_str(rd);
    r->unit = mt_isowire_get_str(rd);
    r->source = mt_isowire_get_str(rd);
    r->subject_space = mt_isowire_get_str(rd);
    uint64_t slen = mt_isowire_get_u64(rd);
    bool spresent = mt_isowire_get_u8(rd);
    r->subject_id_len =
        spresent ? (size_t)slen : 0; /* without a subject its length means nothing */
    if (spresent && slen >= 1 && slen <= MAX_SUBJECT)
        r->subject_id = mt_isowire_get_bytes(rd, (size_t)slen);
    else if (spresent)
        r->subject_id = &none; /* present, with a length the agent refuses unread */
    uint64_t ntags = mt_isowire_get_u64(rd);
    bool tpresent = mt_isowire_get_u8(rd);
    r->ntags = (size_t)ntags;
    if (tpresent && ntags <= MAX_TAGS) {
        for (size_t i = 0; i < ntags && !rd->bad; i++) {
            out->tags[i].key = mt_isowire_get_str(rd);
            out->tags[i].value = mt_isowire_get_str(rd);
        }
        r->tags = out->tags;
    } else if (tpresent) {
        r->tags = out->tags; /* more than 8: refused on the number */
    }
    if (rd->bad || rd->off != rd->len)
        return -EBADMSG;
    return 0;
}

/* ---- option structs ---- */

static int put_conf(struct mt_buf *b, const struct mittari_option *table, const void *conf,
                    int depth)
{
    const unsigned char *base = conf;
    int rc = 0;

    for (const struct mittari_option *o = table; o && o->name && !rc; o++) {
        const unsigned char *src = base + o->offset;
        switch (o->type) {
        case MITTARI_OPT_STRING: {
            const char *s;
            memcpy(&s, src, sizeof(s));
            rc = mt_isowire_put_str(b, s, MT_ISOWIRE_INIT_MAX);
            break;
        }
        case MITTARI_OPT_INT:
        case MITTARI_OPT_DURATION:
        case MITTARI_OPT_SIZE:
        case MITTARI_OPT_DOUBLE:
            rc = mt_buf_add(b, src, 8);
            break;
        case MITTARI_OPT_BOOL:
            rc = mt_buf_add(b, src, sizeof(bool));
            break;
        case MITTARI_OPT_ENUM:
            rc = mt_buf_add(b, src, sizeof(int));
            break;
        case MITTARI_OPT_LIST: {
            struct mittari_list l;
            memcpy(&l, src, sizeof(l));
            if (depth >= MAX_LIST_DEPTH)
                return -EINVAL;
            rc = mt_isowire_put_u64(b, l.n);
            for (size_t i = 0; i < l.n && !rc; i++)
                rc = put_conf(b, o->sub, (const unsigned char *)l.items + i * o->sub_size,
                              depth + 1);
            break;
        }
        default:
            return -EINVAL;
        }
    }
    return rc;
}

int mt_isowire_put_conf(struct mt_buf *b, const struct mittari_option *table, const void *conf)
{
    return put_conf(b, table, conf, 0);
}

static int get_conf(struct mt_isowire_rd *rd, const struct mittari_option *table, void *conf,
                    struct mt_arena *arena, int depth)
{
    unsigned char *base = conf;

    for (const struct mittari_option *o = table; o && o->name; o++) {
        unsigned char *dst = base + o->offset;
        switch (o->type) {
        case MITTARI_OPT_STRING: {
            const char *s = mt_isowire_get_str(rd);
            char *copy = NULL;
            if (s && !(copy = mt_arena_strdup(arena, s)))
                return -ENOMEM;
            memcpy(dst, &copy, sizeof(copy));
            break;
        }
        case MITTARI_OPT_INT:
        case MITTARI_OPT_DURATION:
        case MITTARI_OPT_SIZE:
        case MITTARI_OPT_DOUBLE: {
            const void *p = mt_isowire_get_bytes(rd, 8);
            if (p)
                memcpy(dst, p, 8);
            break;
        }
        case MITTARI_OPT_BOOL: {
            uint8_t v = mt_isowire_get_u8(rd);
            bool bv = v != 0;
            memcpy(dst, &bv, sizeof(bv));
            break;
        }
        case MITTARI_OPT_ENUM: {
            int32_t v = mt_isowire_get_i32(rd);
            int iv = v;
            memcpy(dst, &iv, sizeof(iv));
            break;
        }
        case MITTARI_OPT_LIST: {
            struct mittari_list l = {0};
            uint64_t n = mt_isowire_get_u64(rd);
            if (depth >= MAX_LIST_DEPTH || rd->bad || n > rd->len || !o->sub_size)
                return -EBADMSG;
            unsigned char *items = n ? mt_arena_alloc(arena, (size_t)n * o->sub_size) : NULL;
            if (n && !items)
                return -ENOMEM;
            for (size_t i = 0; i < n; i++) {
                int rc = get_conf(rd, o->sub, items + i * o->sub_size, arena, depth + 1);
                if (rc)
                    return rc;
            }
            l.n = (size_t)n;
            l.items = items;
            memcpy(dst, &l, sizeof(l));
            break;
        }
        default:
            return -EBADMSG;
        }
        if (rd->bad)
            return -EBADMSG;
    }
    return 0;
}

int mt_isowire_get_conf(struct mt_isowire_rd *rd, const struct mittari_option *table, void *conf,
                        struct mt_arena *arena)
{
    return get_conf(rd, table, conf, arena, 0);
}

/* ---- INIT ---- */

int mt_isowire_put_init(struct mt_buf *b, const char *path, const struct stat *st,
                        const char *plugin, const char *name, const char *module, int log_level,
                        const struct mittari_option *table, const void *conf)
{
    int rc = mt_isowire_put_u8(b, MT_ISOWIRE_INIT);
    rc = rc ? rc : mt_isowire_put_str(b, path, MT_ISOWIRE_INIT_MAX);
    rc = rc ? rc : mt_isowire_put_u64(b, (uint64_t)st->st_dev);
    rc = rc ? rc : mt_isowire_put_u64(b, (uint64_t)st->st_ino);
    rc = rc ? rc : mt_isowire_put_i64(b, (int64_t)st->st_size);
    rc = rc ? rc : mt_isowire_put_i64(b, (int64_t)st->st_mtim.tv_sec);
    rc = rc ? rc : mt_isowire_put_i64(b, (int64_t)st->st_mtim.tv_nsec);
    rc = rc ? rc : mt_isowire_put_str(b, plugin, MT_ISOWIRE_MSG_MAX);
    rc = rc ? rc : mt_isowire_put_str(b, name, MT_ISOWIRE_MSG_MAX);
    rc = rc ? rc : mt_isowire_put_str(b, module, MT_ISOWIRE_MSG_MAX);
    rc = rc ? rc : mt_isowire_put_i32(b, log_level);
    rc = rc ? rc : mt_isowire_put_i32(b, (int32_t)getpid());
    return rc ? rc : mt_isowire_put_conf(b, table, conf);
}

int mt_isowire_get_init(struct mt_isowire_rd *rd, struct mt_isowire_init *out)
{
    memset(out, 0, sizeof(*out));
    if (mt_isowire_get_u8(rd) != MT_ISOWIRE_INIT)
        return -EBADMSG;
    out->path = mt_isowire_get_str(rd);
    out->st.st_dev = (dev_t)mt_isowire_get_u64(rd);
    out->st.st_ino = (ino_t)mt_isowire_get_u64(rd);
    out->st.st_size = (off_t)mt_isowire_get_i64(rd);
    out->st.st_mtim.tv_sec = (time_t)mt_isowire_get_i64(rd);
    out->st.st_mtim.tv_nsec = (long)mt_isowire_get_i64(rd);
    out->plugin = mt_isowire_get_str(rd);
    out->name = mt_isowire_get_str(rd);
    out->module = mt_isowire_get_str(rd);
    out->log_level = mt_isowire_get_i32(rd);
    out->agent_pid = mt_isowire_get_i32(rd);
    if (rd->bad || !out->path || !out->plugin || !out->name || !out->module)
        return -EBADMSG;
    out->conf = *rd; /* the rest: the options */
    return 0;
}
