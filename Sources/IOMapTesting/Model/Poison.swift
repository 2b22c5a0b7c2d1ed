// Counterpart: none in the kernel; the checkers' side of page poisoning (the kernel's
// page_poison and init_on_free debug options fill freed pages with a pattern for the same
// reason). Folio memory poisoned when handed out (PageCache's FolioMemory.fill) carries, at
// every file offset, a byte the checkers can recognise, so a byte that differs from what a
// reader should see and equals the poison byte at its offset is memory the engine never
// wrote or zeroed: it is named as such rather than as a plain mismatch.

import PageCache

public enum PoisonCheck {
    /// The message for poison found at `offset` (as the checker reports offsets).
    public static func message(offset: Int) -> String {
        "poison at offset \(offset): memory never written or zeroed reached a reader"
    }

    /// The first index `i` at which `got[i]` differs from `expected[i]` (a missing expected
    /// byte counts as zero, as past EOF) and is the poison byte of file offset
    /// `fileOffset + i`; nil when no differing byte is poison.
    public static func firstPoison(_ got: some Collection<UInt8>, expected: some Collection<UInt8>, fileOffset: Int) -> Int? {
        var e = expected.makeIterator()
        for (i, b) in got.enumerated() {
            let want = e.next() ?? 0
            if b != want && FolioMemory.isPoison(b, atFileOffset: fileOffset + i) { return i }
        }
        return nil
    }

    /// `what`, led by the poison message when a differing byte of `got` is poison.
    /// `reportOffset` converts an index of `got` to the offset the checker reports.
    public static func describe(
        _ what: String, got: some Collection<UInt8>, expected: some Collection<UInt8>, fileOffset: Int,
        reportOffset: (Int) -> Int
    ) -> String {
        guard let i = firstPoison(got, expected: expected, fileOffset: fileOffset) else { return what }
        return "\(message(offset: reportOffset(i))): \(what)"
    }
}
