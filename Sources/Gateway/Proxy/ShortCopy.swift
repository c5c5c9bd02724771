/// Copies of the short byte runs a head is written from: field names, most
/// values, the short strings made of them. At these lengths a call to
/// `memmove` (through the PLT, then its dispatch on the length) costs more
/// than the copy; here up to 32 bytes are two overlapping copies of the
/// first and last 16, 8, 4, 2 or 1 bytes, each of a constant size, which
/// the compiler makes one load and one store. Longer runs go to `memmove`.
/// Only `copyMemory` is used, never a Swift load or store function: the
/// compiler knows it releases nothing, so a loop over header strings that
/// copies them keeps borrowing them instead of retaining each one.
/// One function, not inlined: a field writer inlines a copy per string it
/// writes, and with them inlined in its loop the optimizer stopped inlining
/// the loop's own iteration (and retained every string it read).
/// The two ranges must not overlap.
enum ShortCopy {
    @inline(never)
    static func copy(_ to: UnsafeMutableRawPointer, from: UnsafeRawPointer, count n: Int) {
        if n > 32 {
            to.copyMemory(from: from, byteCount: n)
        } else if n >= 16 {
            pair(to, from, n, 16)
        } else if n >= 8 {
            pair(to, from, n, 8)
        } else if n >= 4 {
            pair(to, from, n, 4)
        } else if n >= 2 {
            pair(to, from, n, 2)
        } else if n == 1 {
            to.copyMemory(from: from, byteCount: 1)
        }
    }

    /// The first and the last `size` bytes of `n` (size ≤ n ≤ 2 × size).
    @inline(__always)
    private static func pair(_ to: UnsafeMutableRawPointer, _ from: UnsafeRawPointer, _ n: Int, _ size: Int) {
        to.copyMemory(from: from, byteCount: size)
        (to + (n &- size)).copyMemory(from: from + (n &- size), byteCount: size)
    }
}
