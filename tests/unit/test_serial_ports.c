/* agent/ports.c (`mittari ports`): ports with their USB identity and the
 * stable /dev/serial/by-id/ names that resolve to them, from a fake port
 * list and fake link directories; and the real list of this machine. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ports.h"

/* The stream's buffer pointer lives on the heap, not in this frame: GCC 12
 * at -O2 (Release) otherwise takes the returned text for a pointer to the
 * local variable whose address open_memstream got (-Wdangling-pointer, a
 * false positive that stopped the Release build; issue 9). */
static char *print(const struct mt_port_info *p, size_t n, const char *const *dirs)
{
    struct {
        char *buf;
        size_t len;
    } *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    FILE *out = open_memstream(&m->buf, &m->len);
    assert_non_null(out);
    assert_int_equal(mt_ports_print_list(out, p, n, dirs), 0);
    fclose(out);
    char *text = m->buf;
    free(m);
    return text;
}

static void test_usb_ports_and_links(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char *byid = tu_path(dir, "by-id"), *bypath = tu_path(dir, "by-path");
    char *usb0 = tu_write(dir, "ttyUSB0", ""), *usb1 = tu_write(dir, "ttyUSB1", "");
    char *s0 = tu_write(dir, "ttyS0", "");
    char l1[512], l2[512], l3[512];
    assert_int_equal(mkdir(byid, 0755), 0);
    assert_int_equal(mkdir(bypath, 0755), 0);
    snprintf(l1, sizeof(l1), "%s/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0", byid);
    snprintf(l2, sizeof(l2), "%s/usb-Acme_Reader_77-if00", byid);
    snprintf(l3, sizeof(l3), "%s/pci-0000:00:14.0-usb-0:2:1.0", bypath);
    assert_int_equal(symlink("../ttyUSB1", l1), 0); /* relative, as udev makes them */
    assert_int_equal(symlink(usb0, l2), 0);
    assert_int_equal(symlink(usb0, l3), 0);

    struct mt_port_info ports[] = {
        {.name = usb1,
         .usb = 1,
         .vid = 0x0403,
         .pid = 0x6001,
         .manufacturer = "FTDI",
         .product = "FT232R USB UART",
         .serial = "A50285BI"},
        {.name = s0, .description = "ttyS0"},
        {.name = usb0, .usb = 1, .vid = 0x1a86, .pid = 0x7523, .product = "USB Serial"},
    };
    const char *dirs[] = {byid, bypath, NULL};
    char *text = print(ports, 3, dirs);
    /* sorted by name: ttyS0, ttyUSB0, ttyUSB1 */
    char *a = strstr(text, "ttyS0  ttyS0"), *b = strstr(text, "ttyUSB0  USB 1a86:7523"),
         *c = strstr(text, "ttyUSB1  USB 0403:6001  FTDI FT232R USB UART  serial number A50285BI");
    if (!a || !b || !c || !(a < b && b < c))
        fail_msg("unexpected listing:\n%s", text);
    /* each port's links below it, and only its own */
    char *n0 = strstr(text, "(no stable name");
    assert_true(n0 && n0 > a && n0 < b);
    char *x2 = strstr(text, "usb-Acme_Reader_77-if00"), *x3 = strstr(text, "pci-0000:00:14.0");
    char *x1 = strstr(text, "usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0");
    assert_true(x2 && x2 > b && x2 < c && x3 && x3 > x2 && x3 < c); /* by-id before by-path */
    assert_true(x1 && x1 > c);
    assert_non_null(strstr(text, "by-id"));
    free(text);
    tu_rmtree(dir);
    free(byid), free(bypath), free(usb0), free(usb1), free(s0), free(dir);
}

static void test_none(void **state)
{
    (void)state;
    const char *dirs[] = {"/nonexistent/by-id", NULL};
    char *text = print(NULL, 0, dirs);
    assert_non_null(strstr(text, "no serial ports found"));
    free(text);
}

/* The machine's own list: whatever it holds, it prints without failing. */
static void test_this_machine(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_int_equal(mt_ports_print(out), 0);
    fclose(out);
    assert_true(strstr(buf, "/dev/") || strstr(buf, "no serial ports found"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usb_ports_and_links),
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_this_machine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
