// Counterpart: none in the kernel; tests of `iomap bench --plot`'s SVG, drawn from synthetic
// reports so that every case (a failing row, a skipped one, a curve over three decades,
// values that are not finite) is drawn whatever the machine measures.
//
// The checks read the text, not a rendering: the document is well formed (tags balance),
// names every row and curve, escapes what it must, colours rows by their outcome, puts
// a wide axis on a log scale, and prints no "nan" or "inf". (@testable: BenchReport's
// initializer is internal; outside the module a report comes only from a run.)

@testable import IOMapBench
import Testing

private let green = "#2e8b3e"
private let red = "#cc3333"

private func row(_ name: String, ratio: Double?, attainment: Double?, holds: Bool, goal: String = "engine ≥ 1.0× kernel")
    -> BenchResult
{
    var r = BenchResult(name: name, goal: goal)
    r.ratio = ratio
    r.attainment = attainment
    r.holds = holds
    r.engineNsPerOp = 100
    r.kernelNsPerOp = ratio.map { 100 * $0 }
    return r
}

private func point(_ x: Double, _ label: String, _ engine: Double?, _ kernel: Double?) -> BenchScalingPoint {
    BenchScalingPoint(x: x, label: label, engineNsPerOp: engine, kernelNsPerOp: kernel)
}

/// A report with a row of every kind and two curves, one over threads, one over 10^3..10^6
/// extents.
private func sampleReport() -> BenchReport {
    var report = BenchReport()
    report.kernelDirFSType = "tmpfs"
    report.repetitions = 5
    report.quick = true
    report.elapsedSeconds = 12.5
    var skipped = row("fuse-write-1m", ratio: nil, attainment: nil, holds: false)
    skipped.skipped = "needs root"
    var failed = row("seek-hole", ratio: nil, attainment: nil, holds: false)
    failed.error = "data check failed at offset 4096"
    report.results = [
        row("append-4k", ratio: 2.5, attainment: 2.5 / 1.5, holds: true, goal: "engine ≥ 1.5× kernel"),
        row("seek-data", ratio: 1.2, attainment: 1.2 / 5, holds: false, goal: "engine ≥ 5× kernel"),
        row("append-1m", ratio: 40, attainment: 40, holds: true),
        row("cleanup", ratio: 1.1, attainment: nil, holds: true, goal: "1 TiB ≤ 2× 1 MiB"),
        skipped, failed,
    ]
    var threads = BenchScaling(
        name: "threads-overwrite-4k", axis: "threads", goal: "2 threads ≥ 1.5× 1 thread",
        points: [point(1, "1 thread", 900, 1000), point(2, "2 threads, one file", 700, 950), point(4, "4 threads", 650, 900)])
    threads.holds = true
    let extents = BenchScaling(
        name: "extents-seek-data", axis: "extents", goal: "flat within 2×",
        points: [point(1e3, "10^3", 50, 80), point(1e4, "10^4", 60, 400), point(1e5, "10^5", 70, 4000), point(1e6, "10^6", 80, 40000)])
    report.scaling = [threads, extents]
    return report
}

/// Whether the tags balance: every opening tag closed in order, self-closing ones alone.
/// Returns what went wrong, or nil.
private func tagProblem(_ svg: String) -> String? {
    var stack: [Substring] = []
    var rest = Substring(svg)
    while let open = rest.firstIndex(of: "<") {
        guard let close = rest[open...].firstIndex(of: ">") else { return "a tag is never closed" }
        let tag = rest[rest.index(after: open)..<close]
        rest = rest[rest.index(after: close)...]
        let name = tag.prefix { !$0.isWhitespace && $0 != "/" && $0 != ">" }
        if tag.hasPrefix("/") {
            let closing = tag.dropFirst()
            guard stack.last == closing else { return "</\(closing)> closes <\(stack.last ?? "nothing")>" }
            stack.removeLast()
        } else if !tag.hasSuffix("/") {
            guard !name.isEmpty else { return "an empty tag" }
            stack.append(name)
        }
    }
    return stack.isEmpty ? nil : "unclosed: \(stack)"
}

/// The `<g class="row ...">` group that names `name`.
private func rowGroup(_ svg: String, _ name: String) -> Substring? {
    svg.split(separator: "<g class=\"row ").first { $0.contains(">\(name)</text>") }
}

/// Whether `svg` contains an ampersand that does not start an entity (&amp; &lt; ...).
private func hasBareAmpersand(_ svg: String) -> Bool {
    let entities = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
    var rest = Substring(svg)
    while let i = rest.firstIndex(of: "&") {
        if !entities.contains(where: { rest[i...].hasPrefix($0) }) { return true }
        rest = rest[rest.index(after: i)...]
    }
    return false
}

@Suite("iomap bench --plot, the SVG")
struct PlotTests {
    @Test("the document is well formed, self-contained SVG and names every row and curve")
    func wellFormed() throws {
        let report = sampleReport()
        let svg = benchPlotSVG(report)
        #expect(svg.hasPrefix("<svg "))
        #expect(svg.hasSuffix("</svg>\n"))
        #expect(tagProblem(svg) == nil, "\(tagProblem(svg) ?? "")")
        #expect(svg.contains("xmlns=\"http://www.w3.org/2000/svg\"") && svg.contains("viewBox=\"0 0 "))
        #expect(svg.contains("sans-serif"))
        #expect(!svg.contains("href"), "no external resources")
        for r in report.results { #expect(svg.contains(">\(r.name)</text>"), "\(r.name) is not drawn") }
        for c in report.scaling { #expect(svg.contains("\(c.name) by \(c.axis)"), "\(c.name) is not drawn") }
        #expect(svg.contains("quick") && svg.contains("5 repetitions") && svg.contains("tmpfs") && svg.contains("12.5 s"))
        // The rows without a bar are listed, with their outcome.
        #expect(try #require(rowGroup(svg, "fuse-write-1m")).contains("skipped: needs root"))
        #expect(try #require(rowGroup(svg, "seek-hole")).contains(">FAILED</text>"))
        let cleanup = try #require(rowGroup(svg, "cleanup"))
        #expect(cleanup.contains(">1.10×</text>") && cleanup.contains(">yes</text>") && cleanup.contains("1 TiB ≤ 2× 1 MiB"))
    }

    @Test("a row name with < & > is escaped")
    func escaping() {
        var report = sampleReport()
        report.results.append(row("a<b&c>\"d'", ratio: 1, attainment: 1, holds: true))
        let svg = benchPlotSVG(report)
        #expect(svg.contains("a&lt;b&amp;c&gt;&quot;d&apos;"))
        #expect(!svg.contains("a<b&c>"))
        #expect(!hasBareAmpersand(svg))
        #expect(tagProblem(svg) == nil, "\(tagProblem(svg) ?? "")")
    }

    @Test("a row that holds is green, one that does not red")
    func colours() throws {
        let svg = benchPlotSVG(sampleReport())
        let holds = try #require(rowGroup(svg, "append-4k"))
        let fails = try #require(rowGroup(svg, "seek-data"))
        #expect(holds.hasPrefix("holds") && holds.contains("fill=\"\(green)\"") && !holds.contains(red))
        #expect(fails.hasPrefix("fails") && fails.contains("fill=\"\(red)\"") && !fails.contains(green))
        // 40× is clamped to the axis' end and labelled with its value.
        #expect(try #require(rowGroup(svg, "append-1m")).contains(">40×</text>"))
    }

    @Test("a curve over 10^3..10^6 gets a log axis with decade ticks; threads get their labels")
    func logAxis() throws {
        let svg = benchPlotSVG(sampleReport())
        let curves = svg.split(separator: "<g class=\"curve ")
        let extents = try #require(curves.first { $0.contains("extents-seek-data by extents") })
        #expect(extents.contains("class=\"x-axis log\""))
        for tick in ["1k", "10k", "100k", "1M"] { #expect(extents.contains(">\(tick)</text>"), "no tick \(tick)") }
        #expect(extents.contains("class=\"y-axis log\""), "50 ns to 40 µs spans more than 10×")
        let threads = try #require(curves.first { $0.contains("threads-overwrite-4k by threads") })
        #expect(threads.contains("class=\"x-axis categorical\"") && threads.contains(">4 threads</text>"))
        #expect(threads.contains("class=\"y-axis linear\"") && threads.contains("holds"))
        #expect(extents.contains("does NOT hold"))
    }

    @Test("NaN, infinite and missing values print no nan or inf")
    func nonFinite() {
        var report = sampleReport()
        report.elapsedSeconds = .nan
        report.results = [
            row("row-1", ratio: .nan, attainment: .nan, holds: false),
            row("row-2", ratio: .infinity, attainment: .infinity, holds: true),
            row("row-3", ratio: 0, attainment: -.infinity, holds: false),
            row("row-4", ratio: 0, attainment: 0, holds: false),
            row("row-5", ratio: nil, attainment: nil, holds: false),
        ]
        report.results[0].ownWork = .nan
        report.results[1].engineNsPerOp = .infinity
        report.scaling[1].points += [point(.nan, "lost", .nan, .infinity), point(.infinity, "far", nil, -1), point(0, "zero", 0, 1)]
        report.scaling.append(BenchScaling(name: "empty-curve", axis: "files", goal: "none"))
        let svg = benchPlotSVG(report)
        // No text of the document has these letters in it, so any occurrence is a value.
        let lower = svg.lowercased()
        #expect(!lower.contains("nan") && !lower.contains("inf"), "the SVG prints a value that is not finite")
        #expect(tagProblem(svg) == nil, "\(tagProblem(svg) ?? "")")
        for name in ["row-1", "row-2", "row-3", "row-4", "row-5", "empty-curve"] {
            #expect(svg.contains(name), "\(name) is not drawn")
        }
    }
}
