/* Modbus decoding (plugins/modbus/decode.c): every type in every order with
 * the vectors of shared/DEVICES.md, and the request plan that merges a
 * register map into reads within the protocol's limits. */
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <modbus.h>

#include "decode.h"

static double dec(const uint16_t *w, int type, int order)
{
    struct mbd_value v;
    assert_int_equal(mbd_decode(w, mbd_words(type), type, order, &v), 0);
    return mbd_to_double(&v);
}

/* 123456.0f = 0x47F12000 (DEVICES.md section 2) in the four orders */
static void f32_vectors(void **s)
{
    (void)s;
    const uint16_t abcd[] = {0x47F1, 0x2000}, cdab[] = {0x2000, 0x47F1};
    const uint16_t badc[] = {0xF147, 0x0020}, dcba[] = {0x0020, 0xF147};
    assert_true(dec(abcd, MBD_F32, MBD_ABCD) == 123456.0);
    assert_true(dec(cdab, MBD_F32, MBD_CDAB) == 123456.0);
    assert_true(dec(badc, MBD_F32, MBD_BADC) == 123456.0);
    assert_true(dec(dcba, MBD_F32, MBD_DCBA) == 123456.0);
    /* and not in a wrong one */
    assert_false(dec(cdab, MBD_F32, MBD_ABCD) == 123456.0);
}

/* modbus_get_float() is CDAB in every libmodbus release (the _abcd.. names
 * are what changed in 3.1.8): our CDAB must agree with it. */
static void f32_cdab_agrees_with_modbus_get_float(void **s)
{
    (void)s;
    const uint16_t w[] = {0x2000, 0x47F1};
    assert_true(modbus_get_float(w) == 123456.0f);
    assert_true(dec(w, MBD_F32, MBD_CDAB) == (double)modbus_get_float(w));
}

static void u32_vectors(void **s)
{
    (void)s;
    const uint16_t abcd[] = {0x1234, 0x5678}, cdab[] = {0x5678, 0x1234};
    const uint16_t badc[] = {0x3412, 0x7856}, dcba[] = {0x7856, 0x3412};
    assert_true(dec(abcd, MBD_U32, MBD_ABCD) == 0x12345678);
    assert_true(dec(cdab, MBD_U32, MBD_CDAB) == 0x12345678);
    assert_true(dec(badc, MBD_U32, MBD_BADC) == 0x12345678);
    assert_true(dec(dcba, MBD_U32, MBD_DCBA) == 0x12345678);
}

/* ADAM-6050/6051: counter = (40002) * 65536 + (40001), low word first;
 * Banner DX80: high word first (DEVICES.md section 1). */
static void counter_modules(void **s)
{
    (void)s;
    const uint16_t adam[] = {0x0001 /* 40001 */, 0x0002 /* 40002 */};
    assert_true(dec(adam, MBD_U32, MBD_CDAB) == 2.0 * 65536 + 1);
    const uint16_t banner[] = {0x0002 /* high */, 0x0001 /* low */};
    assert_true(dec(banner, MBD_U32, MBD_ABCD) == 2.0 * 65536 + 1);
}

static void u64_orders(void **s)
{
    (void)s;
    const uint16_t abcd[] = {0x0102, 0x0304, 0x0506, 0x0708};
    const uint16_t cdab[] = {0x0708, 0x0506, 0x0304, 0x0102};
    const uint16_t badc[] = {0x0201, 0x0403, 0x0605, 0x0807};
    const uint16_t dcba[] = {0x0807, 0x0605, 0x0403, 0x0201};
    struct mbd_value v;
    const uint16_t *w[] = {abcd, cdab, badc, dcba};
    for (int o = 0; o < 4; o++) {
        assert_int_equal(mbd_decode(w[o], 4, MBD_U64, MBD_ABCD + o, &v), 0);
        assert_int_equal(v.cls, MBD_UNSIGNED);
        assert_true(v.u == 0x0102030405060708ull); /* exact: not through a double */
    }
}

static void f64_and_signed(void **s)
{
    (void)s;
    const uint16_t f64[] = {0x40FE, 0x2400, 0x0000, 0x0000}; /* 123456.0 */
    assert_true(dec(f64, MBD_F64, MBD_ABCD) == 123456.0);
    const uint16_t f64dcba[] = {0x0000, 0x0000, 0x0024, 0xFE40};
    assert_true(dec(f64dcba, MBD_F64, MBD_DCBA) == 123456.0);
    const uint16_t m2[] = {0xFFFE};
    assert_true(dec(m2, MBD_I16, MBD_AB) == -2);
    assert_true(dec(m2, MBD_U16, MBD_AB) == 65534);
    const uint16_t m2ba[] = {0xFEFF};
    assert_true(dec(m2ba, MBD_I16, MBD_BA) == -2);
    const uint16_t i32[] = {0xFFFF, 0xFFFE};
    assert_true(dec(i32, MBD_I32, MBD_ABCD) == -2);
    const uint16_t i32c[] = {0xFFFE, 0xFFFF};
    assert_true(dec(i32c, MBD_I32, MBD_CDAB) == -2);
    const uint16_t ba[] = {0x3412};
    assert_true(dec(ba, MBD_U16, MBD_BA) == 0x1234);
}

static void order_must_fit_type(void **s)
{
    (void)s;
    const uint16_t w[4] = {1, 2, 3, 4};
    struct mbd_value v;
    assert_int_equal(mbd_decode(w, 4, MBD_U16, MBD_ABCD, &v), -EINVAL);
    assert_int_equal(mbd_decode(w, 4, MBD_U32, MBD_AB, &v), -EINVAL);
    assert_int_equal(mbd_decode(w, 4, 99, MBD_AB, &v), -EINVAL);
    assert_int_equal(mbd_decode(w, 1, MBD_U32, MBD_ABCD, &v), -ERANGE);
    assert_int_equal(mbd_decode(w, 3, MBD_F64, MBD_ABCD, &v), -ERANGE);
    /* a 16-bit register takes the byte order of its device's 32-bit order */
    assert_int_equal(mbd_order_for(MBD_U16, MBD_CDAB), MBD_AB);
    assert_int_equal(mbd_order_for(MBD_U16, MBD_DCBA), MBD_BA);
    assert_int_equal(mbd_order_for(MBD_U32, MBD_BADC), MBD_BADC);
}

static void disassemble_inverts(void **s)
{
    (void)s;
    uint16_t w[4];
    struct mbd_value v;
    for (int type = 0; type < MBD_NTYPES; type++) {
        for (int o = 0; o < MBD_NORDERS; o++) {
            if (!mbd_order_fits(type, o) || type == MBD_F32 || type == MBD_F64)
                continue;
            uint64_t raw = 0x8899AABBCCDDEEFFull >> (64 - 16 * mbd_words(type));
            mbd_disassemble(raw, mbd_words(type), o, w);
            assert_int_equal(mbd_decode(w, 4, type, o, &v), 0);
            assert_true(mbd_assemble(w, mbd_words(type), o) == raw);
        }
    }
}

/* ---- the plan ---- */

static void adjacent_merge(void **s)
{
    (void)s;
    struct mbd_item it[] = {
        {MBD_FN_HOLDING, 2, 2}, {MBD_FN_HOLDING, 0, 2}, {MBD_FN_HOLDING, 4, 1},
        {MBD_FN_INPUT, 4, 1},   {MBD_FN_HOLDING, 10, 1}, {MBD_FN_COIL, 0, 1},
        {MBD_FN_COIL, 1, 1},
    };
    struct mbd_request rq[7];
    size_t of[7];
    int n = mbd_plan(it, 7, 125, 2000, 0, rq, of);
    assert_int_equal(n, 4); /* holding 0-4, holding 10, input 4, coils 0-1 */
    assert_int_equal(rq[0].function, MBD_FN_HOLDING);
    assert_int_equal(rq[0].address, 0);
    assert_int_equal(rq[0].count, 5);
    assert_int_equal(rq[1].address, 10);
    assert_int_equal(rq[2].function, MBD_FN_INPUT);
    assert_int_equal(rq[3].function, MBD_FN_COIL);
    assert_int_equal(rq[3].count, 2);
    assert_int_equal(of[0], 0);
    assert_int_equal(of[1], 0);
    assert_int_equal(of[4], 1);
    assert_int_equal(of[6], 3);
    /* a gap of 5 merges 0-4 and 10 into one read of 11 */
    n = mbd_plan(it, 7, 125, 2000, 5, rq, of);
    assert_int_equal(n, 3);
    assert_int_equal(rq[0].count, 11);
}

static void overlap_is_one_read(void **s)
{
    (void)s;
    struct mbd_item it[] = {{MBD_FN_HOLDING, 0, 4}, {MBD_FN_HOLDING, 1, 1}, {MBD_FN_HOLDING, 2, 2}};
    struct mbd_request rq[3];
    size_t of[3];
    assert_int_equal(mbd_plan(it, 3, 125, 2000, 0, rq, of), 1);
    assert_int_equal(rq[0].count, 4);
}

static void limits_split(void **s)
{
    (void)s;
    struct mbd_item it[200];
    struct mbd_request rq[200];
    size_t of[200];
    for (int i = 0; i < 200; i++)
        it[i] = (struct mbd_item){MBD_FN_INPUT, (uint32_t)i, 1};
    assert_int_equal(mbd_plan(it, 200, 125, 2000, 0, rq, of), 2);
    assert_int_equal(rq[0].count, 125);
    assert_int_equal(rq[1].address, 125);
    assert_int_equal(rq[1].count, 75);
    /* a u32 never straddles two requests */
    for (int i = 0; i < 100; i++)
        it[i] = (struct mbd_item){MBD_FN_HOLDING, (uint32_t)(2 * i), 2};
    assert_int_equal(mbd_plan(it, 100, 125, 2000, 0, rq, of), 2);
    assert_int_equal(rq[0].count, 124);
    /* a device that takes 10 registers a request */
    assert_int_equal(mbd_plan(it, 100, 10, 2000, 0, rq, of), 20);
    /* bits: 2000 a request */
    struct mbd_item b[] = {{MBD_FN_DISCRETE, 0, 1}, {MBD_FN_DISCRETE, 1999, 1},
                           {MBD_FN_DISCRETE, 2000, 1}};
    assert_int_equal(mbd_plan(b, 3, 125, 2000, 2000, rq, of), 2);
    assert_int_equal(rq[0].count, 2000);
}

static void plan_refuses(void **s)
{
    (void)s;
    struct mbd_request rq[2];
    size_t of[2];
    struct mbd_item big[] = {{MBD_FN_HOLDING, 0, 4}};
    assert_int_equal(mbd_plan(big, 1, 2, 2000, 0, rq, of), -EINVAL);
    struct mbd_item past[] = {{MBD_FN_HOLDING, 65534, 4}};
    assert_int_equal(mbd_plan(past, 1, 125, 2000, 0, rq, of), -EINVAL);
    struct mbd_item last[] = {{MBD_FN_HOLDING, 65535, 1}};
    assert_int_equal(mbd_plan(last, 1, 125, 2000, 0, rq, of), 1);
    assert_int_equal(mbd_plan(last, 1, 126, 2000, 0, rq, of), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(f32_vectors),
        cmocka_unit_test(f32_cdab_agrees_with_modbus_get_float),
        cmocka_unit_test(u32_vectors),
        cmocka_unit_test(counter_modules),
        cmocka_unit_test(u64_orders),
        cmocka_unit_test(f64_and_signed),
        cmocka_unit_test(order_must_fit_type),
        cmocka_unit_test(disassemble_inverts),
        cmocka_unit_test(adjacent_merge),
        cmocka_unit_test(overlap_is_one_read),
        cmocka_unit_test(limits_split),
        cmocka_unit_test(plan_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
