/*
 * module: the one symbol an output module exports (agent/outmod.h),
 * compiled into each module with MT_MODULE_TYPE naming its type (CMake's
 * mittari_output_module). Everything else in a module is hidden.
 */
#include "../outmod.h"
#include "mt_interface.h"

__attribute__((visibility("default"))) const struct mt_output_module mt_output_module = {
    .interface = MT_OUTPUT_INTERFACE,
    .size = sizeof(struct mt_output_module),
    .type = &MT_MODULE_TYPE,
};
