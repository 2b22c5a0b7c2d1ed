// Counterpart: none in the kernel; the per-CPU/per-task words lockdep-style hooks read, here
// for the interleaving hooks (see IOMapBase/Interleaving.swift).
//
// The two words the interleaving hooks of IOMapBase read on every lock operation, kept in C
// so that Swift reads them directly: a Swift global or static goes through a lazy-init
// accessor call each time, and pthread_getspecific is a call too. Both accessors inline.

#ifndef CIOMAPBASE_H
#define CIOMAPBASE_H

#include <stddef.h>
#include <stdint.h>

/// Threads bound to an interleaver anywhere in the process.
extern long ciomap_bound_threads;

/// The calling thread's interleaver binding (an unmanaged Swift object), or NULL.
extern _Thread_local void *ciomap_thread_binding;

static inline long ciomap_bound_thread_count(void) {
    return __atomic_load_n(&ciomap_bound_threads, __ATOMIC_RELAXED);
}

static inline void ciomap_add_bound_threads(long delta) {
    __atomic_fetch_add(&ciomap_bound_threads, delta, __ATOMIC_RELAXED);
}

static inline void *ciomap_get_thread_binding(void) { return ciomap_thread_binding; }

static inline void ciomap_set_thread_binding(void *binding) { ciomap_thread_binding = binding; }

/// A spin-wait hint to the CPU (x86 PAUSE, arm64 YIELD; nothing elsewhere): the sleeping
/// locks spin briefly on a held lock before they sleep, as the kernel's rwsem spins on a
/// running owner.
static inline void ciomap_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// open(2)'s O_DIRECT, or 0 where the platform has none.
int ciomap_o_direct(void);

/// CRC32C (Castagnoli) of `length` bytes, continuing from `crc` (0 to start): the SSE4.2
/// instruction where the CPU has it, else the tables (crc32c.c).
uint32_t ciomap_crc32c(uint32_t crc, const void *data, size_t length);

/// The same, always by the slicing-by-8 tables (for tests: hardware == software).
uint32_t ciomap_crc32c_software(uint32_t crc, const void *data, size_t length);

/// The same by the SSE4.2 instruction when available, else by the tables.
uint32_t ciomap_crc32c_hardware(uint32_t crc, const void *data, size_t length);

/// 1 when the CPU has the SSE4.2 crc32 instruction, else 0.
int ciomap_crc32c_hardware_available(void);

#endif
