// Counterpart: none in the kernel; `iomap bench --plot` draws a report as one SVG file, as
// fio_generate_plots and fio2gnuplot draw fio's logs, but from the report itself, with no
// plotting program to install.
//
// Why it is drawn this way:
// - The bars show attainment, not the ratio: the rows' ratios are in different units
//   (kernel / engine, an overhead fraction, a figure over its bound) against different
//   goals, but every attainment is 1 at its goal, so one axis and one goal line serve all.
// - On a log axis, each bar growing from the goal line: twice the goal and half of it are
//   the same distance, so a bar's length says how far the row is from its goal, either way.
// - Clamped to 0.1×–10×: beyond that the distance no longer matters to the picture; the
//   label keeps the true value and a notch marks the clamp.
// - A value that is not finite is left out, never printed: "nan" in an attribute is an
//   error to a renderer, and in a label it tells the reader nothing.
// - No Foundation (only the host modules may import it): numbers are formatted here.
// - Pure: the function returns the text, the tool writes the file, the tests read it.

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The report as a self-contained SVG 1.1 document: a title with the run's facts, every row
/// with an attainment as a bar against its goal (the others listed beneath), and one small
/// chart per scaling curve.
public func benchPlotSVG(_ report: BenchReport) -> String {
    let layout = RowLayout(report.results)
    var svg = SVGCanvas()
    var y = drawTitle(report, into: &svg)
    y = drawRows(report.results, layout: layout, top: y + 18, into: &svg)
    y = drawScaling(report.scaling, width: layout.width, top: y + 28, into: &svg)
    return svg.document(width: layout.width, height: y + 16)
}

// MARK: - Drawing primitives

private enum Palette {
    static let ink = "#222222"
    static let muted = "#666666"
    static let grid = "#dddddd"
    static let stripe = "#f3f3f3"
    static let holds = "#2e8b3e"
    static let fails = "#cc3333"
    static let skipped = "#9a9a9a"
    static let engine = "#1f6fb4"
    static let kernel = "#e07b10"
}

/// The width of one character of 12-pixel DejaVu Sans, roughly: what the layout reserves per
/// character, since an SVG cannot be asked how wide its text came out.
private let charWidth = 7.0

/// The elements of the document, in painting order (later ones on top).
private struct SVGCanvas {
    private(set) var elements: [String] = []

    mutating func add(_ element: String) { elements.append(element) }

    /// Text, escaped, and clipped to `limit` characters when given.
    mutating func text(
        _ content: String, x: Double, y: Double, size: Double = 12, anchor: String = "start", fill: String = Palette.ink,
        bold: Bool = false, limit: Int? = nil
    ) {
        var attributes = "x=\"\(coordinate(x))\" y=\"\(coordinate(y))\" font-size=\"\(coordinate(size))\" fill=\"\(fill)\""
        if anchor != "start" { attributes += " text-anchor=\"\(anchor)\"" }
        if bold { attributes += " font-weight=\"bold\"" }
        let shown = limit.map { clipped(content, $0) } ?? content
        add("<text \(attributes)>\(xmlEscaped(shown))</text>")
    }

    mutating func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String, width: Double = 1) {
        add(
            "<line x1=\"\(coordinate(x1))\" y1=\"\(coordinate(y1))\" x2=\"\(coordinate(x2))\" y2=\"\(coordinate(y2))\" "
                + "stroke=\"\(stroke)\" stroke-width=\"\(coordinate(width))\"/>")
    }

    mutating func rect(x: Double, y: Double, width: Double, height: Double, fill: String, stroke: String? = nil) {
        let outline = stroke.map { " stroke=\"\($0)\"" } ?? ""
        add(
            "<rect x=\"\(coordinate(x))\" y=\"\(coordinate(y))\" width=\"\(coordinate(width))\" height=\"\(coordinate(height))\" "
                + "fill=\"\(fill)\"\(outline)/>")
    }

    func document(width: Double, height: Double) -> String {
        let (w, h) = (coordinate(width), coordinate(height))
        let head =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"\(w)\" height=\"\(h)\" viewBox=\"0 0 \(w) \(h)\" "
            + "font-family=\"DejaVu Sans, Liberation Sans, Helvetica, Arial, sans-serif\">"
        let background = "<rect x=\"0\" y=\"0\" width=\"\(w)\" height=\"\(h)\" fill=\"#ffffff\"/>"
        return ([head, background] + elements + ["</svg>"]).joined(separator: "\n") + "\n"
    }
}

/// Text made safe for an XML text node or a quoted attribute; control characters, which XML
/// 1.0 does not allow even escaped, become spaces (an error message may carry a newline).
func xmlEscaped(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.utf8.count)
    for ch in s {
        switch ch {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        default:
            let control = ch.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F }
            out.append(control ? " " : ch)
        }
    }
    return out
}

/// At most `limit` characters, the last an ellipsis when something was cut.
private func clipped(_ s: String, _ limit: Int) -> String {
    s.count <= limit ? s : String(s.prefix(max(limit - 1, 0))) + "…"
}

/// Words wrapped into at most `lines` lines of `width` characters, the last clipped.
private func wrapped(_ s: String, width: Int, lines: Int) -> [String] {
    var out: [String] = []
    var current = ""
    for word in s.split(separator: " ") {
        if !current.isEmpty && current.count + 1 + word.count > width && out.count < lines - 1 {
            out.append(current)
            current = String(word)
        } else {
            current += (current.isEmpty ? "" : " ") + word
        }
    }
    if !current.isEmpty { out.append(clipped(current, width)) }
    return out
}

// MARK: - Numbers, without Foundation

/// `x` rounded to `digits` decimals (at most 6), as String(format: "%.*f") would print it;
/// "—" for a value that is not finite, so that no "nan" or "inf" reaches the picture.
func plotFixed(_ x: Double, _ digits: Int) -> String {
    guard x.isFinite else { return "—" }
    let d = min(max(digits, 0), 6)
    var unit = 1
    for _ in 0..<d { unit *= 10 }
    let scaled = (abs(x) * Double(unit)).rounded()
    // Past 2^53 the decimals are noise, and near 2^63 Int would trap: print a mantissa.
    guard scaled < 9.0e15 else {
        let e = Int(floor(log10(abs(x))))
        return (x < 0 ? "-" : "") + plotFixed(abs(x) / pow(10, Double(e)), 2) + "e" + String(e)
    }
    let n = Int(scaled)
    var s = (x < 0 && n > 0 ? "-" : "") + String(n / unit)
    if d > 0 {
        let fraction = String(n % unit)
        s += "." + String(repeating: "0", count: d - fraction.count) + fraction
    }
    return s
}

/// `x` to `n` significant digits, trailing zeros dropped ("1.5", "120", "0.25").
func plotSignificant(_ x: Double, _ n: Int = 3) -> String {
    guard x.isFinite else { return "—" }
    guard x != 0 else { return "0" }
    let e = Int(floor(log10(abs(x))))
    return trimmedZeros(plotFixed(x, n - 1 - e))
}

private func trimmedZeros(_ s: String) -> String {
    guard s.contains(".") else { return s }
    var t = Substring(s)
    while t.last == "0" { t = t.dropLast() }
    if t.last == "." { t = t.dropLast() }
    return String(t)
}

/// An SVG coordinate: one decimal at most; 0 for a value that is not finite (none should
/// reach here, every value is checked before it is placed).
private func coordinate(_ v: Double) -> String { v.isFinite ? trimmedZeros(plotFixed(v, 1)) : "0" }

/// A time per operation in the unit that keeps it short.
private func plotNs(_ ns: Double) -> String {
    let a = abs(ns)
    if a < 1e3 { return plotSignificant(ns) + " ns" }
    if a < 1e6 { return plotSignificant(ns / 1e3) + " µs" }
    if a < 1e9 { return plotSignificant(ns / 1e6) + " ms" }
    return plotSignificant(ns / 1e9) + " s"
}

/// 10^k as a tick label: 1, 10, 100, 1k, 10k, ... 100E; past that 1e21.
private func decadeLabel(_ k: Int) -> String {
    let prefixes = ["", "k", "M", "G", "T", "P", "E"]
    if k >= 0 && k < prefixes.count * 3 { return "1" + String(repeating: "0", count: k % 3) + prefixes[k / 3] }
    if k < 0 && k >= -6 { return "0." + String(repeating: "0", count: -k - 1) + "1" }
    return "1e" + String(k)
}

/// A row's ratio as the table prints it: a percentage for the cost and overhead rows.
private func ratioLabel(_ r: BenchResult) -> String {
    guard let x = r.ratio, x.isFinite else { return "—" }
    switch r.name {
    case "live-hooks": return (x >= 0 ? "+" : "") + plotFixed(x * 100, 1) + "%"
    case "memory-4k", "memory-2m": return plotFixed(x * 100, 2) + "%"
    default: return plotFixed(x, 2) + "×"
    }
}

// MARK: - Status

/// What a row or a curve came to, and how it is shown.
private enum Outcome {
    case holds, fails, skipped, failed

    init(holds: Bool, skipped: String?, error: String?) {
        self = error != nil ? .failed : skipped != nil ? .skipped : holds ? .holds : .fails
    }

    var word: String {
        switch self {
        case .holds: return "yes"
        case .fails: return "NO"
        case .skipped: return "skipped"
        case .failed: return "FAILED"
        }
    }

    var colour: String {
        switch self {
        case .holds: return Palette.holds
        case .fails, .failed: return Palette.fails
        case .skipped: return Palette.skipped
        }
    }

    var className: String {
        switch self {
        case .holds: return "holds"
        case .fails: return "fails"
        case .skipped: return "skipped"
        case .failed: return "failed"
        }
    }
}

/// Why a row or curve was not measured, or could not run, as a line beneath it.
private func reasonLine(skipped: String?, error: String?) -> String? {
    if let error { return "FAILED: " + error }
    return skipped.map { "skipped: " + $0 }
}

// MARK: - Title

private func drawTitle(_ r: BenchReport, into svg: inout SVGCanvas) -> Double {
    svg.text("iomap bench", x: 16, y: 30, size: 20, bold: true)
    var facts = [
        r.quick ? "quick (1/16 size)" : "full size", "medians of \(r.repetitions) repetitions after a warm-up",
    ]
    if !r.kernelDirFSType.isEmpty { facts.append("kernel side on \(r.kernelDirFSType)") }
    if !r.diskDirFSType.isEmpty { facts.append("disk side on \(r.diskDirFSType)") }
    if r.elapsedSeconds.isFinite { facts.append("\(plotFixed(r.elapsedSeconds, 1)) s") }
    svg.text(facts.joined(separator: " · "), x: 16, y: 52, size: 13, fill: Palette.muted)
    return 52
}

// MARK: - Panel 1: the rows against their goals

/// Where the columns of the rows panel go; the name and goal columns are as wide as the
/// longest name and goal need, within bounds.
private struct RowLayout {
    static let nameX = 16.0
    static let barWidth = 380.0
    /// Room on either side of the bars for a clamped bar's value label.
    static let labelRoom = 56.0
    let nameWidth: Double
    let width: Double

    init(_ rows: [BenchResult]) {
        let longestName = Double(rows.map(\.name.count).max() ?? 0)
        nameWidth = min(max(longestName * charWidth, 100), 260)
        let goalX = Self.nameX + nameWidth + 2 * Self.labelRoom + Self.barWidth + 8 + 78 + 62
        // The goal text and the own-work note after it.
        let longestGoal = Double(rows.map { $0.goal.count + ($0.ownWork == nil ? 0 : 18) }.max() ?? 0)
        width = min(max(goalX + longestGoal * charWidth + 16, 1000), 1500)
    }

    var nameChars: Int { Int(nameWidth / charWidth) }
    var barLeft: Double { Self.nameX + nameWidth + Self.labelRoom }
    var barRight: Double { barLeft + Self.barWidth }
    var goalLine: Double { barLeft + Self.barWidth / 2 }
    var ratioX: Double { barRight + Self.labelRoom + 8 }
    var statusX: Double { ratioX + 78 }
    var goalX: Double { statusX + 62 }
    var goalChars: Int { Int((width - goalX - 16) / charWidth) }

    /// Where an attainment lands: 0.1 at the left end, 1 in the middle, 10 at the right end.
    func position(_ attainment: Double) -> Double {
        goalLine + log10(min(max(attainment, 0.1), 10)) / 2 * Self.barWidth
    }

    func rowHeight(_ r: BenchResult) -> Double { reasonLine(skipped: r.skipped, error: r.error) == nil ? 22 : 36 }
}

/// An attainment the bars can draw: finite (a zero or negative one is clamped to the left
/// end); nil for a missing, infinite or NaN one, whose row is listed beneath instead.
private func plottable(_ attainment: Double?) -> Double? { attainment.flatMap { $0.isFinite ? $0 : nil } }

private let attainmentTicks: [Double] = [0.1, 0.2, 0.5, 1, 2, 5, 10]

private func drawRows(_ rows: [BenchResult], layout: RowLayout, top: Double, into svg: inout SVGCanvas) -> Double {
    svg.text("Every row against its goal", x: 16, y: top + 14, size: 15, bold: true)
    svg.text(
        "attainment: 1× is the goal exactly, above 1× beyond it; log scale from 0.1× to 10× (clamped), "
            + "each bar from the goal line; green holds, red does not", x: 16, y: top + 32, size: 11, fill: Palette.muted)
    let headY = top + 56
    for (label, x) in [("row", RowLayout.nameX), ("ratio", layout.ratioX), ("holds", layout.statusX), ("goal", layout.goalX)] {
        svg.text(label, x: x, y: headY, size: 11, fill: Palette.muted, bold: true)
    }
    for t in attainmentTicks {
        let label = plotSignificant(t) + "×"
        svg.text(label, x: layout.position(t), y: headY, size: 11, anchor: "middle", fill: Palette.muted, bold: t == 1)
    }
    let bars = rows.compactMap { r in plottable(r.attainment).map { (r, $0) } }
    var tops: [Double] = []
    var y = headY + 8
    for (r, _) in bars {
        tops.append(y)
        y += layout.rowHeight(r)
    }
    for (i, t) in tops.enumerated() where i % 2 == 0 {
        svg.rect(x: 8, y: t, width: layout.width - 16, height: layout.rowHeight(bars[i].0), fill: Palette.stripe)
    }
    for t in attainmentTicks where t != 1 { svg.line(layout.position(t), headY + 4, layout.position(t), y, stroke: Palette.grid) }
    for ((r, a), t) in zip(bars, tops) { drawBarRow(r, attainment: a, layout: layout, top: t, into: &svg) }
    svg.line(layout.goalLine, headY + 4, layout.goalLine, y, stroke: Palette.ink, width: 1.5)
    if bars.isEmpty {
        svg.text("no row has a single-number goal in this run", x: layout.barLeft, y: y + 15, fill: Palette.muted)
        y += 22
    }
    return drawUnplottedRows(rows.filter { plottable($0.attainment) == nil }, layout: layout, top: y + 12, into: &svg)
}

/// One bar: from the goal line to the row's attainment, with its value, ratio, outcome and
/// goal; in a group with a tooltip, classed by the outcome.
private func drawBarRow(_ r: BenchResult, attainment a: Double, layout: RowLayout, top: Double, into svg: inout SVGCanvas) {
    let outcome = Outcome(holds: r.holds, skipped: r.skipped, error: r.error)
    let value = plotSignificant(max(a, 0)) + "×"
    svg.add("<g class=\"row \(outcome.className)\">")
    svg.add("<title>\(xmlEscaped("\(r.name): \(value) of its goal, \(r.goal)"))</title>")
    let baseline = top + 15
    svg.text(r.name, x: RowLayout.nameX, y: baseline, limit: layout.nameChars)
    let (start, end) = (layout.goalLine, layout.position(a))
    svg.rect(x: min(start, end), y: top + 5, width: max(abs(end - start), 1.5), height: 12, fill: outcome.colour)
    var labelX = a >= 1 ? end + 4 : end - 4
    if a > 10 || a < 0.1 {
        // The clamp: a notch pointing on past the end of the axis.
        let tip = a > 10 ? end + 7 : end - 7
        svg.add(
            "<polygon points=\"\(coordinate(end)),\(coordinate(top + 4)) \(coordinate(tip)),\(coordinate(top + 11)) "
                + "\(coordinate(end)),\(coordinate(top + 18))\" fill=\"\(outcome.colour)\"/>")
        labelX = a > 10 ? tip + 3 : tip - 3
    }
    svg.text(value, x: labelX, y: baseline, size: 11, anchor: a >= 1 ? "start" : "end")
    drawRowColumns(r, outcome: outcome, layout: layout, baseline: baseline, into: &svg)
    svg.add("</g>")
}

/// The columns right of the bars (ratio, outcome, goal) and the reason line beneath, shared by
/// the bars and the rows listed beneath them.
private func drawRowColumns(_ r: BenchResult, outcome: Outcome, layout: RowLayout, baseline: Double, into svg: inout SVGCanvas) {
    svg.text(ratioLabel(r), x: layout.ratioX, y: baseline)
    svg.text(outcome.word, x: layout.statusX, y: baseline, fill: outcome.colour, bold: outcome != .holds)
    var goal = r.goal
    if let own = r.ownWork, own.isFinite { goal += " (own work \(plotFixed(own, 2))×)" }
    svg.text(goal, x: layout.goalX, y: baseline, fill: Palette.ink, limit: layout.goalChars)
    if let reason = reasonLine(skipped: r.skipped, error: r.error) {
        let chars = Int((layout.width - layout.barLeft - 16) / (charWidth * 10 / 12))
        svg.text(reason, x: layout.barLeft, y: baseline + 14, size: 10, fill: outcome.colour, limit: chars)
    }
}

/// The rows without a bar: their goal is not one number, or they were not measured.
private func drawUnplottedRows(_ rows: [BenchResult], layout: RowLayout, top: Double, into svg: inout SVGCanvas) -> Double {
    guard !rows.isEmpty else { return top }
    svg.text(
        "Rows without an attainment: the goal is not one number, the row was not measured, or it could not run", x: 16, y: top + 14,
        size: 12, bold: true)
    var y = top + 22
    for r in rows {
        let outcome = Outcome(holds: r.holds, skipped: r.skipped, error: r.error)
        let baseline = y + 15
        svg.add("<g class=\"row \(outcome.className)\">")
        svg.text(r.name, x: RowLayout.nameX, y: baseline, limit: layout.nameChars)
        // Only what the heading does not already say; a row merely without an attainment
        // gets no note (repeated down a long list, it would be noise).
        let note: String?
        switch outcome {
        case .failed: note = "could not run"
        case .skipped: note = "not measured on this machine"
        case .holds, .fails: note = r.attainment == nil ? nil : "attainment not finite"
        }
        if let note { svg.text(note, x: layout.barLeft, y: baseline, size: 11, fill: Palette.muted) }
        drawRowColumns(r, outcome: outcome, layout: layout, baseline: baseline, into: &svg)
        svg.add("</g>")
        y += layout.rowHeight(r)
    }
    return y
}

// MARK: - Panel 2: the scaling curves

private func drawScaling(_ curves: [BenchScaling], width: Double, top: Double, into svg: inout SVGCanvas) -> Double {
    svg.text("Scaling: time per operation along each axis", x: 16, y: top + 14, size: 15, bold: true)
    svg.text(
        "the engine and the kernel doing the same operation at each point; an axis spanning more than 10× is drawn on a log scale",
        x: 16, y: top + 32, size: 11, fill: Palette.muted)
    guard !curves.isEmpty else {
        svg.text("no scaling curves in this run", x: 16, y: top + 58, fill: Palette.muted)
        return top + 64
    }
    let gap = 16.0
    let chartWidth = (width - 32 - gap) / 2
    let chartHeight = 290.0
    for (i, c) in curves.enumerated() {
        let frame = Frame(
            x: 16 + Double(i % 2) * (chartWidth + gap), y: top + 46 + Double(i / 2) * (chartHeight + gap), width: chartWidth,
            height: chartHeight)
        drawChart(c, frame: frame, into: &svg)
    }
    return top + 46 + Double((curves.count + 1) / 2) * (chartHeight + gap) - gap
}

private struct Frame {
    var x, y, width, height: Double
    var right: Double { x + width }
    var bottom: Double { y + height }
}

/// One curve's chart: title and legend, the axes, the engine's and the kernel's lines, and
/// the goal with its outcome as the caption.
private func drawChart(_ c: BenchScaling, frame f: Frame, into svg: inout SVGCanvas) {
    let outcome = Outcome(holds: c.holds, skipped: c.skipped, error: c.error)
    svg.add("<g class=\"curve \(outcome.className)\">")
    svg.rect(x: f.x, y: f.y, width: f.width, height: f.height, fill: "#ffffff", stroke: "#cccccc")
    svg.text("\(c.name) by \(c.axis)", x: f.x + 10, y: f.y + 20, size: 13, bold: true, limit: Int((f.width - 180) / 7.5))
    drawLegend(right: f.right - 10, y: f.y + 16, into: &svg)
    let area = Frame(x: f.x + 72, y: f.y + 38, width: f.width - 88, height: f.height - 38 - 92)
    svg.line(area.x, area.bottom, area.right, area.bottom, stroke: Palette.muted)
    svg.line(area.x, area.y, area.x, area.bottom, stroke: Palette.muted)
    let xs = drawXAxis(c.points, axis: c.axis, area: area, into: &svg)
    let values = c.points.flatMap { [$0.engineNsPerOp, $0.kernelNsPerOp] }.compactMap { measuredNs($0) }
    var drawn = 0
    if let y = drawYAxis(values, area: area, into: &svg) {
        let labels = c.points.map(\.label)
        drawn += drawSeries(
            "engine", c.points.map(\.engineNsPerOp), labels: labels, xs: xs, y: y, colour: Palette.engine, square: false, into: &svg)
        drawn += drawSeries(
            "kernel", c.points.map(\.kernelNsPerOp), labels: labels, xs: xs, y: y, colour: Palette.kernel, square: true, into: &svg)
    }
    if drawn == 0 {
        svg.text("no point measured", x: area.x + area.width / 2, y: area.y + area.height / 2, anchor: "middle", fill: Palette.muted)
    }
    let status: String
    switch outcome {
    case .holds: status = "holds"
    case .fails: status = "does NOT hold"
    case .skipped, .failed: status = reasonLine(skipped: c.skipped, error: c.error) ?? ""
    }
    for (i, line) in wrapped("goal: \(c.goal) — \(status)", width: Int((f.width - 20) / charWidth), lines: 2).enumerated() {
        svg.text(line, x: f.x + 10, y: f.bottom - 26 + Double(i) * 15, fill: outcome == .holds ? Palette.ink : outcome.colour)
    }
    svg.add("</g>")
}

/// A time that can be drawn: finite and above zero (a log axis needs it, and no operation
/// takes no time); nil otherwise, and the point is left out.
private func measuredNs(_ ns: Double?) -> Double? { ns.flatMap { $0.isFinite && $0 > 0 ? $0 : nil } }

private func drawLegend(right: Double, y: Double, into svg: inout SVGCanvas) {
    for (i, (name, colour)) in [("engine", Palette.engine), ("kernel", Palette.kernel)].enumerated() {
        let x = right - 150 + Double(i) * 78
        svg.line(x, y, x + 20, y, stroke: colour, width: 2)
        svg.add(marker(x: x + 10, y: y, colour: colour, square: i == 1, title: nil))
        svg.text(name, x: x + 25, y: y + 4, size: 11)
    }
}

private func marker(x: Double, y: Double, colour: String, square: Bool, title: String?) -> String {
    let tooltip = title.map { "<title>\(xmlEscaped($0))</title>" } ?? ""
    if square {
        return
            "<rect x=\"\(coordinate(x - 3.5))\" y=\"\(coordinate(y - 3.5))\" width=\"7\" height=\"7\" fill=\"\(colour)\">\(tooltip)</rect>"
    }
    return "<circle cx=\"\(coordinate(x))\" cy=\"\(coordinate(y))\" r=\"3.5\" fill=\"\(colour)\">\(tooltip)</circle>"
}

/// A log axis: decades from the one at or below the least value to the one at or above the
/// greatest, mapped linearly onto `from`...`to` (which may run downwards, for a y axis).
private struct LogScale {
    let lowDecade: Int
    let highDecade: Int
    let from: Double
    let to: Double

    init(low: Double, high: Double, from: Double, to: Double) {
        lowDecade = Int(floor(log10(low)))
        highDecade = max(Int(ceil(log10(high))), lowDecade + 1)
        self.from = from
        self.to = to
    }

    func position(_ v: Double) -> Double {
        from + (log10(v) - Double(lowDecade)) / Double(highDecade - lowDecade) * (to - from)
    }

    /// Every decade, or every other (and so on) when there are more than 8.
    var ticks: [Int] { Array(stride(from: lowDecade, through: highDecade, by: (highDecade - lowDecade + 7) / 8)) }
}

/// The x positions of the points: on a log axis of x when the points span more than a factor
/// of 10, else evenly spaced and named by their labels (the thread counts); nil for a point
/// a log axis cannot place.
private func drawXAxis(_ points: [BenchScalingPoint], axis: String, area: Frame, into svg: inout SVGCanvas) -> [Double?] {
    let xs = points.map(\.x).filter { $0.isFinite && $0 > 0 }
    if let low = xs.min(), let high = xs.max(), high / low > 10 {
        // Inset, so that a point on the first or last decade is not drawn on the frame.
        let scale = LogScale(low: low, high: high, from: area.x + 12, to: area.right - 12)
        svg.add("<g class=\"x-axis log\">")
        for k in scale.ticks {
            let x = scale.position(pow(10, Double(k)))
            svg.line(x, area.y, x, area.bottom, stroke: Palette.grid)
            svg.text(decadeLabel(k), x: x, y: area.bottom + 16, size: 11, anchor: "middle", fill: Palette.muted)
        }
        svg.add("</g>")
        svg.text("\(axis) (log scale)", x: area.x + area.width / 2, y: area.bottom + 48, size: 11, anchor: "middle")
        return points.map { $0.x.isFinite && $0.x > 0 ? scale.position($0.x) : nil }
    }
    svg.add("<g class=\"x-axis categorical\">")
    let step = area.width / Double(max(points.count, 1))
    let chars = Int(step / (charWidth * 10 / 12))
    var positions: [Double?] = []
    for (i, p) in points.enumerated() {
        let x = area.x + (Double(i) + 0.5) * step
        positions.append(x)
        svg.line(x, area.bottom, x, area.bottom + 4, stroke: Palette.muted)
        // "2 threads, one file": the part after the comma on a second line.
        for (j, part) in p.label.split(separator: ",", maxSplits: 1).enumerated() {
            let text = part.drop { $0 == " " }
            svg.text(
                String(text), x: x, y: area.bottom + 16 + Double(j) * 13, size: 10, anchor: "middle", fill: Palette.muted, limit: chars)
        }
    }
    svg.add("</g>")
    svg.text(axis, x: area.x + area.width / 2, y: area.bottom + 48, size: 11, anchor: "middle")
    return positions
}

/// Draws the y axis for `values` (ns per op, all finite and positive) and returns where a
/// value goes: a log axis when they span more than a factor of 10, else linear from 0; nil
/// when there is nothing to draw.
private func drawYAxis(_ values: [Double], area: Frame, into svg: inout SVGCanvas) -> ((Double) -> Double)? {
    guard let low = values.min(), let high = values.max() else { return nil }
    var ticks: [(value: Double, label: String)] = []
    let map: (Double) -> Double
    if high / low > 10 {
        let scale = LogScale(low: low, high: high, from: area.bottom, to: area.y)
        ticks = scale.ticks.map { k in (pow(10, Double(k)), plotNs(pow(10, Double(k)))) }
        map = scale.position
        svg.add("<g class=\"y-axis log\">")
    } else {
        // A step of 1, 2 or 5 times a power of ten, about four steps to the top.
        let raw = high / 4
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        let count = Int((high / step).rounded(.up))
        let top = Double(count) * step
        ticks = (0...count).map { i in (Double(i) * step, i == 0 ? "0" : plotNs(Double(i) * step)) }
        map = { v in area.bottom - v / top * area.height }
        svg.add("<g class=\"y-axis linear\">")
    }
    for t in ticks {
        let y = map(t.value)
        svg.line(area.x, y, area.right, y, stroke: Palette.grid)
        svg.text(t.label, x: area.x - 6, y: y + 4, size: 10, anchor: "end", fill: Palette.muted)
    }
    svg.add("</g>")
    return map
}

/// One side's line: the points with an x position and a drawable time, joined where they
/// follow each other (a missing point breaks the line), each marked, with a tooltip.
/// Returns the number of points drawn.
private func drawSeries(
    _ side: String, _ values: [Double?], labels: [String], xs: [Double?], y: (Double) -> Double, colour: String, square: Bool,
    into svg: inout SVGCanvas
) -> Int {
    var segments: [[(Double, Double, String)]] = [[]]
    for i in values.indices {
        guard let x = xs[i], let ns = measuredNs(values[i]) else {
            if !(segments.last?.isEmpty ?? true) { segments.append([]) }
            continue
        }
        segments[segments.count - 1].append((x, y(ns), "\(labels[i]): \(side) \(plotNs(ns)) per op"))
    }
    for segment in segments where segment.count > 1 {
        let points = segment.map { "\(coordinate($0.0)),\(coordinate($0.1))" }.joined(separator: " ")
        svg.add("<polyline points=\"\(points)\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\"/>")
    }
    let all = segments.flatMap { $0 }
    for (x, py, title) in all { svg.add(marker(x: x, y: py, colour: colour, square: square, title: title)) }
    return all.count
}
