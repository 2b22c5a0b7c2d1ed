// Counterpart: none; the mutex the test harnesses share state under. It stands outside the
// engine's lock hierarchy (harness state is never held across an engine call that could
// take it again), and in Thread Sanitizer builds (-DIOMAP_TSAN) it is a pthread mutex, whose
// hand-offs the sanitizer can see.

import IOMapBase
import Synchronization

#if IOMAP_TSAN
    public typealias HarnessMutex<Value> = PThreadMutex<Value>
#else
    public typealias HarnessMutex<Value> = Mutex<Value>
#endif
