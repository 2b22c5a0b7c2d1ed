// Counterpart: none in the kernel; the one check the probes' settings tests share.

import Testing

/// A settings check found what it should: no problem when `fragment` is nil, else a problem
/// whose text mentions `fragment` (so a user can tell which flag to change).
func expectProblem(_ problem: String?, mentions fragment: String?, sourceLocation: SourceLocation = #_sourceLocation) {
    if let fragment {
        #expect(
            problem?.contains(fragment) == true, "expected a problem mentioning \(fragment), got \(problem ?? "none")",
            sourceLocation: sourceLocation)
    } else {
        #expect(problem == nil, "expected no problem, got \(problem ?? "")", sourceLocation: sourceLocation)
    }
}
