/*
 * ports: `mittari ports`: the serial ports of this machine, with what
 * identifies a USB adapter (vendor and product id, names, serial number)
 * and its stable names under /dev/serial/by-id/ (and by-path/), so IT can
 * tell two readers apart and configure a name that survives replugging.
 *
 * Reads libserialport's port list and the /dev/serial link directories;
 * owns nothing after it returns. Main thread of the CLI; never runs inside
 * the agent's loop.
 */
#ifndef MT_PORTS_H
#define MT_PORTS_H

#include <stddef.h>
#include <stdio.h>

/* Prints the ports to out. 0, or -errno (-EIO: libserialport could not
 * list the ports). */
int mt_ports_print(FILE *out);

/* One port as libserialport describes it (strings borrowed; NULL when
 * unknown). */
struct mt_port_info {
    const char *name;        /* /dev/ttyUSB0 */
    const char *description; /* libserialport's one-line description */
    int usb;                 /* 1: a USB adapter; vid, pid and strings below apply */
    int vid, pid;
    const char *manufacturer, *product, *serial;
};

/* The printing step alone, for tests: ports in any order (printed sorted
 * by name), link_dirs a NULL-terminated list of directories whose symlinks
 * name ports (by-id first). 0 or -errno. */
int mt_ports_print_list(FILE *out, const struct mt_port_info *ports, size_t n,
                        const char *const *link_dirs);

#endif
