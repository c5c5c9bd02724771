#ifndef GATEWAY_CMIMALLOC_SHIM_H
#define GATEWAY_CMIMALLOC_SHIM_H
#include <mimalloc.h>
#include <stdbool.h>
#include <stdlib.h>

/* Whether the process's `malloc` is mimalloc's: a block from `malloc`
   lies in mimalloc's heap only when libmimalloc took the symbol from the
   C library, as the gateway's link order makes it do. */
static inline bool gw_malloc_is_mimalloc(void) {
    void *p = malloc(16);
    bool mine = p != NULL && mi_is_in_heap_region(p);
    free(p);
    return mine;
}
#endif
