/* Pseudonyms: keyed, deterministic, 22 characters of base64url, key file. */
#include "testutil.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pseudo.h"
#include "util.h"

#define KEY_A "0123456789abcdef0123456789abcdef"
#define KEY_B "0123456789abcdef0123456789abcdeF"

static void make(const struct mt_pseudo *p, const char *space, const char *id,
                 char out[MT_SUBJECT_SIZE])
{
    memset(out, 'x', MT_SUBJECT_SIZE);
    assert_int_equal(mt_pseudo_make(p, space, id, strlen(id), out), 0);
}

/* What the header documents: HMAC-SHA256(key, space || 0 || id), 128 bits, base64url. */
static void reference(const char *key, size_t keylen, const char *space, const char *id,
                      char out[MT_SUBJECT_SIZE])
{
    uint8_t msg[256], mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    size_t sl = strlen(space), il = strlen(id);
    memcpy(msg, space, sl);
    msg[sl] = 0;
    memcpy(msg + sl + 1, id, il);
    assert_non_null(HMAC(EVP_sha256(), key, (int)keylen, msg, sl + 1 + il, mac, &maclen));
    mt_base64url(mac, 16, out, MT_SUBJECT_SIZE);
}

static void deterministic(void **s)
{
    (void)s;
    struct mt_pseudo p, q;
    char a[MT_SUBJECT_SIZE], b[MT_SUBJECT_SIZE];
    assert_int_equal(mt_pseudo_init(&p, KEY_A), 0);
    assert_int_equal(mt_pseudo_init(&q, KEY_A), 0);
    make(&p, "card", "04A1B2C3D4", a);
    make(&q, "card", "04A1B2C3D4", b);
    assert_string_equal(a, b);
    make(&p, "card", "04A1B2C3D4", b);
    assert_string_equal(a, b);
    mt_pseudo_free(&p);
    mt_pseudo_free(&q);
}

static void matches_the_documented_construction(void **s)
{
    (void)s;
    struct mt_pseudo p;
    char a[MT_SUBJECT_SIZE], want[MT_SUBJECT_SIZE];
    assert_int_equal(mt_pseudo_init(&p, KEY_A), 0);
    make(&p, "wiegand26", "12345678", a);
    reference(KEY_A, strlen(KEY_A), "wiegand26", "12345678", want);
    assert_string_equal(a, want);
    mt_pseudo_free(&p);
}

static void different_key_different_output(void **s)
{
    (void)s;
    struct mt_pseudo p, q;
    char a[MT_SUBJECT_SIZE], b[MT_SUBJECT_SIZE];
    assert_int_equal(mt_pseudo_init(&p, KEY_A), 0);
    assert_int_equal(mt_pseudo_init(&q, KEY_B), 0);
    make(&p, "card", "04A1B2C3D4", a);
    make(&q, "card", "04A1B2C3D4", b);
    assert_string_not_equal(a, b);
    mt_pseudo_free(&p);
    mt_pseudo_free(&q);
}

static void different_space_different_output(void **s)
{
    (void)s;
    struct mt_pseudo p;
    char a[MT_SUBJECT_SIZE], b[MT_SUBJECT_SIZE], c[MT_SUBJECT_SIZE];
    assert_int_equal(mt_pseudo_init(&p, KEY_A), 0);
    make(&p, "card", "1234", a);
    make(&p, "wiegand26", "1234", b);
    assert_string_not_equal(a, b);
    /* the separator keeps ("ab", "c") apart from ("a", "bc") */
    make(&p, "ab", "c", b);
    make(&p, "a", "bc", c);
    assert_string_not_equal(b, c);
    mt_pseudo_free(&p);
}

static void different_id_different_output(void **s)
{
    (void)s;
    struct mt_pseudo p;
    char a[MT_SUBJECT_SIZE], b[MT_SUBJECT_SIZE];
    assert_int_equal(mt_pseudo_init(&p, KEY_A), 0);
    make(&p, "card", "1234", a);
    make(&p, "card", "1235", b);
    assert_string_not_equal(a, b);
    mt_pseudo_free(&p);
}

static void is_22_chars_of_base64url(void **s)
{
    (void)s;
    struct mt_pseudo p;
    char a[MT_SUBJECT_SIZE], id[16];
    assert_int_equal(mt_pseudo_init(&p, KEY_A), 0);
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof(id), "%d", i);
        make(&p, "card", id, a);
        assert_int_equal(strlen(a), MT_PSEUDO_LEN);
        assert_int_equal(
            strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            MT_PSEUDO_LEN);
    }
    mt_pseudo_free(&p);
}

static void raw_id_never_appears(void **s)
{
    (void)s;
    struct mt_pseudo p;
    char a[MT_SUBJECT_SIZE];
    const char *ids[] = {"AAAA", "0000", "card", "abcdefghijklmnopqrstuvwxyz", "04A1B2C3D4"};
    assert_int_equal(mt_pseudo_init(&p, KEY_A), 0);
    for (size_t i = 0; i < MT_ARRAY_SIZE(ids); i++) {
        make(&p, "card", ids[i], a);
        assert_null(strstr(a, ids[i]));
    }
    /* binary ids too: the output is never the id's own base64url */
    const uint8_t raw[16] = {0x04, 0xa1, 0xb2, 0xc3, 0xd4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    char plain[MT_SUBJECT_SIZE];
    mt_base64url(raw, sizeof(raw), plain, sizeof(plain));
    assert_int_equal(mt_pseudo_make(&p, "card", raw, sizeof(raw), a), 0);
    assert_string_not_equal(a, plain);
    assert_null(memmem(a, strlen(a), "BKGyw9", 6)); /* base64url of the first bytes */
    mt_pseudo_free(&p);
}

static void short_key_refused(void **s)
{
    (void)s;
    struct mt_pseudo p;
    char a[MT_SUBJECT_SIZE];
    assert_int_equal(mt_pseudo_init(&p, "0123456789abcde"), -EINVAL); /* 15 bytes */
    assert_int_equal(mt_pseudo_make(&p, "card", "1", 1, a), -EINVAL); /* no key, no output */
    assert_int_equal(mt_pseudo_init(&p, ""), -EINVAL);
    assert_int_equal(mt_pseudo_init(&p, "0123456789abcdef"), 0); /* 16 is enough */
    mt_pseudo_free(&p);
}

static void oversized_input_refused(void **s)
{
    (void)s;
    struct mt_pseudo p;
    char a[MT_SUBJECT_SIZE];
    uint8_t id[65] = {0};
    char space[65];
    memset(space, 's', 64);
    space[64] = 0;
    assert_int_equal(mt_pseudo_init(&p, KEY_A), 0);
    assert_int_equal(mt_pseudo_make(&p, "card", id, 64, a), 0);
    assert_int_equal(mt_pseudo_make(&p, "card", id, 65, a), -EINVAL);
    assert_int_equal(mt_pseudo_make(&p, space, id, 4, a), -EINVAL);
    mt_pseudo_free(&p);
}

/* A key longer than SHA-256's block is hashed by HMAC, not cut: two long keys
 * that share their first 64 bytes must still give different pseudonyms. */
static void long_key_is_used_whole(void **s)
{
    (void)s;
    char k1[101], k2[101], a[MT_SUBJECT_SIZE], b[MT_SUBJECT_SIZE], want[MT_SUBJECT_SIZE];
    struct mt_pseudo p, q;
    memset(k1, 'k', 100);
    k1[100] = 0;
    memcpy(k2, k1, sizeof(k1));
    k2[99] = 'K';
    assert_int_equal(mt_pseudo_init(&p, k1), 0);
    assert_int_equal(mt_pseudo_init(&q, k2), 0);
    make(&p, "card", "1234", a);
    make(&q, "card", "1234", b);
    assert_string_not_equal(a, b);
    reference(k1, 100, "card", "1234", want);
    assert_string_equal(a, want);
    mt_pseudo_free(&p);
    mt_pseudo_free(&q);
}

static void free_wipes_the_key(void **s)
{
    (void)s;
    struct mt_pseudo p;
    static const struct mt_pseudo zero;
    char a[MT_SUBJECT_SIZE];
    assert_int_equal(mt_pseudo_init(&p, KEY_A), 0);
    mt_pseudo_free(&p);
    assert_memory_equal(&p, &zero, sizeof(zero)); /* nothing derived from the key stays */
    assert_int_equal(mt_pseudo_make(&p, "card", "1", 1, a), -EINVAL);
}

static void key_file_created_once_0600(void **s)
{
    (void)s;
    char *dir = tu_tmpdir();
    char *path = tu_path(dir, "pseudo.key");
    struct mt_pseudo p, q;
    struct stat st;
    int created = -1;
    char a[MT_SUBJECT_SIZE], b[MT_SUBJECT_SIZE];

    assert_int_equal(mt_pseudo_load_or_create(&p, path, &created), 0);
    assert_int_equal(created, 1);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    size_t len = 0;
    char *text = tu_read(path, &len);
    assert_int_equal(len, 65);
    assert_int_equal(strspn(text, "0123456789abcdef"), 64);
    assert_int_equal(text[64], '\n');

    assert_int_equal(mt_pseudo_load_or_create(&q, path, &created), 0);
    assert_int_equal(created, 0);
    size_t len2 = 0;
    char *text2 = tu_read(path, &len2);
    assert_int_equal(len2, len);
    assert_memory_equal(text, text2, len); /* reused, not rewritten */
    make(&p, "card", "1234", a);
    make(&q, "card", "1234", b);
    assert_string_equal(a, b);

    /* the key is the file's text without its newline */
    struct mt_pseudo r;
    text[64] = 0;
    assert_int_equal(mt_pseudo_init(&r, text), 0);
    make(&r, "card", "1234", b);
    assert_string_equal(a, b);

    mt_pseudo_free(&p);
    mt_pseudo_free(&q);
    mt_pseudo_free(&r);
    free(text);
    free(text2);
    free(path);
    tu_rmtree(dir);
    free(dir);
}

static void two_created_keys_differ(void **s)
{
    (void)s;
    char *dir = tu_tmpdir();
    char *p1 = tu_path(dir, "k1"), *p2 = tu_path(dir, "k2");
    struct mt_pseudo p, q;
    int created;
    char a[MT_SUBJECT_SIZE], b[MT_SUBJECT_SIZE];
    assert_int_equal(mt_pseudo_load_or_create(&p, p1, &created), 0);
    assert_int_equal(mt_pseudo_load_or_create(&q, p2, &created), 0);
    make(&p, "card", "1234", a);
    make(&q, "card", "1234", b);
    assert_string_not_equal(a, b);
    mt_pseudo_free(&p);
    mt_pseudo_free(&q);
    free(p1);
    free(p2);
    tu_rmtree(dir);
    free(dir);
}

static void short_key_file_refused(void **s)
{
    (void)s;
    char *dir = tu_tmpdir();
    char *path = tu_write(dir, "short.key", "tooshort\n");
    struct mt_pseudo p;
    int created = -1;
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(mt_pseudo_load_or_create(&p, path, &created), -EINVAL);
    assert_int_equal(created, 0);
    free(path);
    path = tu_write(dir, "empty.key", "");
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(mt_pseudo_load_or_create(&p, path, &created), -EINVAL);
    free(path);
    /* a key others can read is refused, whatever it holds */
    path = tu_write(dir, "open.key", "0123456789abcdef0123456789abcdef\n");
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(mt_pseudo_load_or_create(&p, path, &created), -EPERM);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(mt_pseudo_load_or_create(&p, path, &created), 0);
    mt_pseudo_free(&p);
    free(path);
    /* a missing directory is an error, not a key */
    path = tu_path(dir, "nodir/pseudo.key");
    assert_int_equal(mt_pseudo_load_or_create(&p, path, &created), -ENOENT);
    assert_int_equal(created, 0);
    free(path);
    tu_rmtree(dir);
    free(dir);
}


/* Issue 15 #8: with monthly rotation a reading at 2026-10-31T22:30Z is in
 * November in Helsinki and in October in UTC. After a reload changes the
 * time zone, the period cached in the old zone must not pick the key. */
static void time_zone_change_forgets_cached_periods(void **s)
{
    (void)s;
    struct mt_pseudo p, fresh;
    char before[MT_SUBJECT_SIZE], after[MT_SUBJECT_SIZE], want[MT_SUBJECT_SIZE];
    const int64_t ts = 1793485800000000LL; /* 2026-10-31T22:30:00Z */
    const char *id = "card-1";

    setenv("TZ", "UTC", 1);
    tzset();
    assert_int_equal(mt_pseudo_init(&p, KEY_A), 0);
    mt_pseudo_set_rotation(&p, MT_ROTATE_MONTHLY);
    assert_int_equal(mt_pseudo_subject(&p, "x", id, strlen(id), ts, before), 0);

    setenv("TZ", "Europe/Helsinki", 1);
    tzset();
    mt_pseudo_tz_changed(&p);
    assert_int_equal(mt_pseudo_subject(&p, "x", id, strlen(id), ts, after), 0);
    /* what an agent started in Helsinki gives */
    assert_int_equal(mt_pseudo_init(&fresh, KEY_A), 0);
    mt_pseudo_set_rotation(&fresh, MT_ROTATE_MONTHLY);
    assert_int_equal(mt_pseudo_subject(&fresh, "x", id, strlen(id), ts, want), 0);
    assert_string_equal(after, want);
    assert_string_not_equal(before, after); /* October's key is not November's */
    mt_pseudo_free(&p);
    mt_pseudo_free(&fresh);
    unsetenv("TZ");
    tzset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(deterministic),
        cmocka_unit_test(matches_the_documented_construction),
        cmocka_unit_test(different_key_different_output),
        cmocka_unit_test(different_space_different_output),
        cmocka_unit_test(different_id_different_output),
        cmocka_unit_test(is_22_chars_of_base64url),
        cmocka_unit_test(raw_id_never_appears),
        cmocka_unit_test(short_key_refused),
        cmocka_unit_test(oversized_input_refused),
        cmocka_unit_test(long_key_is_used_whole),
        cmocka_unit_test(free_wipes_the_key),
        cmocka_unit_test(key_file_created_once_0600),
        cmocka_unit_test(two_created_keys_differ),
        cmocka_unit_test(short_key_file_refused),
        cmocka_unit_test(time_zone_change_forgets_cached_periods),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
