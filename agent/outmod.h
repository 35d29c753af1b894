/*
 * outmod: output types built as modules. The http, mqtt and postgresql
 * outputs link libcurl, libmosquitto and libpq, and through them some thirty
 * more libraries (OpenSSL, GnuTLS, Kerberos, ...); built into the agent they
 * cost every agent memory and start-up time whether it uses them or not. As
 * modules they are mapped only by an agent whose configuration uses the type
 * (or by `mittari plugins` listing them). `file` stays built in.
 *
 * A module TYPE is the file DIR/output-TYPE.so, DIR the first directory of
 * the plugin search path (agent.plugin_path in order, then the plugin dir:
 * plugin.h) that has one. It exports one symbol, mt_output_module. Unlike an
 * input plugin it is compiled against the agent's internal headers (output.h
 * and what it includes) and calls agent functions the executable exports
 * (agent/outputs/host.syms), so only an agent of the same build may load it:
 * its interface id, the version and a hash of those headers, must equal the
 * agent's, or it is refused before anything else of it is used.
 *
 * The registry (plugin.h) owns the modules loaded. A module is never
 * unmapped (RTLD_NODELETE): the libraries under it keep thread-local state
 * and exit handlers that must not outlive their code. Loop thread, the reload
 * worker (while the loop leaves the registry alone) or the CLI; not
 * thread-safe.
 */
#ifndef MT_OUTMOD_H
#define MT_OUTMOD_H

#include <stddef.h>
#include <stdint.h>

#include "output.h"
#include "plugin.h"

/* What a module exports as MT_OUTPUT_MODULE_SYMBOL (agent/outputs/module.c). */
struct mt_output_module {
    const char *interface; /* MT_OUTPUT_INTERFACE of its build: first, in every version */
    uint32_t size;         /* sizeof(struct mt_output_module) */
    const struct mt_output_type *type;
};
#define MT_OUTPUT_MODULE_SYMBOL "mt_output_module"
#define MT_OUTPUT_MODULE_PREFIX "output-"

/* This agent's interface id ("VERSION/HASH"). */
const char *mt_outmod_interface(void);

/* The output type NAME: a built-in one, else the module of the search path,
 * loaded once (a module of a type also built in is never looked for).
 * 0; -ENOENT: no such type, or the module of a type this build makes is not
 * installed; another negative: the module cannot be loaded or is refused.
 * err says what (naming the type and the file), hint what to do. */
int mt_outmod_find(struct mt_registry *r, const char *name, const struct mt_output_type **out,
                   char *err, size_t errlen, char *hint, size_t hintlen);

/* Whether NAME is an output type of this build, built in or a module (loaded
 * or not). */
bool mt_outmod_is_type(const char *name);

/* Loads every module type of this build and every output-*.so of the search
 * path; each problem goes to err_cb (loading goes on). Returns the number of
 * problems; the modules loaded are in r->om, sorted by name. */
size_t mt_outmod_scan(struct mt_registry *r, void (*err_cb)(const char *what, const char *msg));

/* The names of every output type: built-in, this build's modules and the
 * module files of the search path, sorted, each once, none loaded. Up to max
 * into names (caller frees each); returns how many. */
size_t mt_outmod_names(const struct mt_registry *r, char **names, size_t max);

/* The checks, on a descriptor already in memory (tests use it directly):
 * interface id equal to ours, size, type present and named expect_name,
 * callbacks of its kind, option table well-formed. */
int mt_outmod_check(const struct mt_output_module *m, const char *expect_name, char *err,
                    size_t errlen);

#endif
