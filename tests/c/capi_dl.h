/*
 * For the C API tests built WITHOUT linking libcgmalloc.so (-DCGM_DLSYM) and run with it
 * preloaded: every cgm_* function of include/cgmalloc.h is looked up with
 * dlsym(RTLD_DEFAULT) by cgm_resolve_api(), and the names are redirected to the pointers
 * found, so the test programs call them as written. Without -DCGM_DLSYM (the programs are
 * linked with -lcgmalloc) cgm_resolve_api() does nothing.
 *
 * Include after cgmalloc.h.
 */
#ifndef CAPI_DL_H
#define CAPI_DL_H

#ifdef CGM_DLSYM
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CGM_API(X)                                                                           \
    X(cgm_root) X(cgm_group_create) X(cgm_group_open) X(cgm_group_destroy) X(cgm_group_path) \
    X(cgm_thread_attach) X(cgm_thread_group) X(cgm_group_read) X(cgm_group_write)           \
    X(cgm_group_stat) X(cgm_reclaimer_add) X(cgm_reclaimer_remove) X(cgm_oom_handler_set)   \
    X(cgm_threshold_eventfd) X(cgm_threshold_remove) X(cgm_charge) X(cgm_uncharge)          \
    X(cgm_group_pressure) X(cgm_pressure_eventfd) X(cgm_pressure_remove)                     \
    X(cgm_group_reclaim) X(cgm_drain_stocks) X(cgm_audit) X(cgm_strerror) X(cgm_version)    \
    X(cgm_malloc)                                                                            \
    X(cgm_free) X(cgm_calloc) X(cgm_realloc) X(cgm_reallocarray) X(cgm_posix_memalign)      \
    X(cgm_aligned_alloc) X(cgm_memalign) X(cgm_valloc) X(cgm_pvalloc)                        \
    X(cgm_malloc_usable_size) X(cgm_free_sized) X(cgm_free_aligned_sized) X(cgm_malloc_trim)

#define CGM_DL_DECLARE(f) static __typeof__(f) *dl_##f;
CGM_API(CGM_DL_DECLARE)

/* Exits with status 2 when the library is not loaded (not preloaded). */
static void cgm_resolve_api(void)
{
#define CGM_DL_RESOLVE(f)                                                              \
    {                                                                                  \
        void *sym = dlsym(RTLD_DEFAULT, #f);                                           \
        if (!sym) {                                                                    \
            fprintf(stderr, "%s not found: run with LD_PRELOAD=libcgmalloc.so\n", #f); \
            exit(2);                                                                   \
        }                                                                              \
        memcpy(&dl_##f, &sym, sizeof sym);                                             \
    }
    CGM_API(CGM_DL_RESOLVE)
#undef CGM_DL_RESOLVE
}

#define cgm_root (*dl_cgm_root)
#define cgm_group_create (*dl_cgm_group_create)
#define cgm_group_open (*dl_cgm_group_open)
#define cgm_group_destroy (*dl_cgm_group_destroy)
#define cgm_group_path (*dl_cgm_group_path)
#define cgm_thread_attach (*dl_cgm_thread_attach)
#define cgm_thread_group (*dl_cgm_thread_group)
#define cgm_group_read (*dl_cgm_group_read)
#define cgm_group_write (*dl_cgm_group_write)
#define cgm_group_stat (*dl_cgm_group_stat)
#define cgm_reclaimer_add (*dl_cgm_reclaimer_add)
#define cgm_reclaimer_remove (*dl_cgm_reclaimer_remove)
#define cgm_oom_handler_set (*dl_cgm_oom_handler_set)
#define cgm_threshold_eventfd (*dl_cgm_threshold_eventfd)
#define cgm_threshold_remove (*dl_cgm_threshold_remove)
#define cgm_charge (*dl_cgm_charge)
#define cgm_uncharge (*dl_cgm_uncharge)
#define cgm_group_pressure (*dl_cgm_group_pressure)
#define cgm_pressure_eventfd (*dl_cgm_pressure_eventfd)
#define cgm_pressure_remove (*dl_cgm_pressure_remove)
#define cgm_group_reclaim (*dl_cgm_group_reclaim)
#define cgm_drain_stocks (*dl_cgm_drain_stocks)
#define cgm_audit (*dl_cgm_audit)
#define cgm_strerror (*dl_cgm_strerror)
#define cgm_version (*dl_cgm_version)
#define cgm_malloc (*dl_cgm_malloc)
#define cgm_free (*dl_cgm_free)
#define cgm_calloc (*dl_cgm_calloc)
#define cgm_realloc (*dl_cgm_realloc)
#define cgm_reallocarray (*dl_cgm_reallocarray)
#define cgm_posix_memalign (*dl_cgm_posix_memalign)
#define cgm_aligned_alloc (*dl_cgm_aligned_alloc)
#define cgm_memalign (*dl_cgm_memalign)
#define cgm_valloc (*dl_cgm_valloc)
#define cgm_pvalloc (*dl_cgm_pvalloc)
#define cgm_malloc_usable_size (*dl_cgm_malloc_usable_size)
#define cgm_free_sized (*dl_cgm_free_sized)
#define cgm_free_aligned_sized (*dl_cgm_free_aligned_sized)
#define cgm_malloc_trim (*dl_cgm_malloc_trim)

#else

static void cgm_resolve_api(void)
{
}

#endif /* CGM_DLSYM */

#endif /* CAPI_DL_H */
