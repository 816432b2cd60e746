/// Renders comparisons as a table for people or as a JSON array for machines.
enum Report {
    /// A JSON array with one object per comparison:
    /// `{"name", "baseline", "ns_per_op", "baseline_ns_per_op", "ratio", "goal", "recorded_ratio"}`;
    /// `goal` and `recorded_ratio` are `null` where the metric has none. A size metric has
    /// `bytes_per_op` and `baseline_bytes_per_op` in place of the two `ns` fields. A metric with
    /// an overhead goal adds `"overhead_ns_per_op"` (ours minus the baseline) and
    /// `"goal_overhead_ns_per_op"`.
    /// - Parameter comparisons: The comparisons.
    /// - Returns: The JSON text.
    static func json(_ comparisons: [Comparison]) -> String {
        let objects = comparisons.map { comparison in
            let measure = comparison.metric.kind == .size ? "bytes_per_op" : "ns_per_op"
            var fields = [
                "\"name\": \(self.quoted(comparison.metric.name))",
                "\"baseline\": \(self.quoted(comparison.metric.baseline))",
                "\"\(measure)\": \(self.number(comparison.oursMedian))",
                "\"baseline_\(measure)\": \(self.number(comparison.baselineMedian))",
                "\"ratio\": \(self.number(comparison.ratio, decimals: 3))",
                "\"goal\": \(self.number(comparison.metric.goal, decimals: 3))",
                "\"recorded_ratio\": \(self.number(comparison.metric.recorded, decimals: 3))",
            ]
            if let overheadGoal = comparison.metric.overheadGoal {
                fields.append("\"overhead_ns_per_op\": \(self.number(comparison.overhead))")
                fields.append("\"goal_overhead_ns_per_op\": \(self.number(overheadGoal))")
            }
            return "  {" + fields.joined(separator: ", ") + "}"
        }
        return objects.isEmpty ? "[]" : "[\n" + objects.joined(separator: ",\n") + "\n]"
    }

    /// A table: medians, rates, ratio, spread, the goal and the recorded ratio, then the
    /// baselines. A size metric's medians are bytes per unit, marked `B`, with no rate.
    /// - Parameter comparisons: The comparisons.
    /// - Returns: The table's text.
    static func table(_ comparisons: [Comparison]) -> String {
        let header = ["scenario", "unit", "ours ns", "ours /s", "base ns", "base /s", "ratio", "spread", "goal", "rec"]
        let rows = comparisons.map { comparison -> [String] in
            let metric = comparison.metric
            return [
                metric.name,
                metric.unit,
                self.value(comparison.oursMedian, of: metric),
                metric.kind == .throughput ? self.rate(comparison.oursMedian) : "-",
                self.value(comparison.baselineMedian, of: metric),
                metric.kind == .throughput ? self.rate(comparison.baselineMedian) : "-",
                self.fixed(comparison.ratio, decimals: 2) + "x",
                self.spread(comparison),
                self.goal(of: metric),
                metric.recorded.map { self.fixed($0, decimals: 2) + "x" } ?? "-",
            ]
        }
        var widths = header.map(\.count)
        for row in rows {
            for (column, cell) in row.enumerated() { widths[column] = max(widths[column], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { column, cell in
                // The name and unit are left-aligned, numbers right-aligned.
                column < 2 ? self.padRight(cell, widths[column]) : self.padLeft(cell, widths[column])
            }
            .joined(separator: "  ")
        }
        var lines = [line(header), String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1))]
        lines += rows.map(line)
        lines.append("")
        lines.append("ns: median ns per unit over rounds. ratio: ours / baseline; above 1 is slower.")
        if comparisons.contains(where: { $0.metric.kind == .size }) {
            lines.append("B: bytes per unit, for a size; its ratio above 1 is larger.")
        }
        lines.append("spread: (max - min) / median over rounds, ours | baseline.")
        lines.append("goal: the README's goal for the ratio. rec: the ratio recorded on a 2-vCPU machine.")
        let overheads = comparisons.filter { $0.metric.overheadGoal != nil }
        if !overheads.isEmpty {
            lines.append("+ns goal: the README's goal for the overhead, ours ns - base ns, instead of the ratio.")
            for comparison in overheads {
                let goal = comparison.metric.overheadGoal ?? 0
                lines.append(
                    "  \(comparison.metric.name): overhead \(self.fixed(comparison.overhead, decimals: 1)) ns, "
                        + "goal \(self.fixed(goal, decimals: 0)) ns: "
                        + (comparison.overhead <= goal ? "met" : "not met")
                )
            }
        }
        lines.append("")
        lines.append("baselines:")
        for comparison in comparisons {
            lines.append("  \(comparison.metric.name): \(comparison.metric.baseline)")
        }
        return lines.joined(separator: "\n")
    }

    /// The goal column: the ratio's goal (`1.30x`), or the overhead's (`+3000ns`), or `-`.
    private static func goal(of metric: Metric) -> String {
        if let goal = metric.goal { return self.fixed(goal, decimals: 2) + "x" }
        if let overheadGoal = metric.overheadGoal { return "+" + self.fixed(overheadGoal, decimals: 0) + "ns" }
        return "-"
    }

    private static func spread(_ comparison: Comparison) -> String {
        func relative(_ values: [Double]) -> String {
            guard let low = values.min(), let high = values.max(), values.count > 1 else { return "-" }
            return self.fixed((high - low) / Statistics.median(values) * 100, decimals: 0) + "%"
        }
        return relative(comparison.ours) + " | " + relative(comparison.baseline)
    }

    /// A median as the table prints it: nanoseconds, or bytes marked `B` for a size.
    private static func value(_ median: Double, of metric: Metric) -> String {
        self.fixed(median, decimals: 1) + (metric.kind == .size ? " B" : "")
    }

    private static func rate(_ nanosecondsPerUnit: Double) -> String {
        guard nanosecondsPerUnit > 0 else { return "-" }
        let perSecond = 1e9 / nanosecondsPerUnit
        if perSecond >= 1e6 { return self.fixed(perSecond / 1e6, decimals: 2) + "M" }
        if perSecond >= 1e3 { return self.fixed(perSecond / 1e3, decimals: 1) + "k" }
        return self.fixed(perSecond, decimals: 0)
    }

    /// `value` with exactly `decimals` digits after the point.
    static func fixed(_ value: Double, decimals: Int) -> String {
        guard value.isFinite else { return value.isNaN ? "nan" : (value < 0 ? "-inf" : "inf") }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        let whole = Int(scaled / scale)
        let fraction = Int(scaled - Double(whole) * scale)
        let sign = value < 0 && scaled != 0 ? "-" : ""
        guard decimals > 0 else { return "\(sign)\(whole)" }
        let digits = String(fraction)
        return "\(sign)\(whole)." + String(repeating: "0", count: decimals - digits.count) + digits
    }

    private static func number(_ value: Double?, decimals: Int = 2) -> String {
        guard let value, value.isFinite else { return "null" }
        return self.fixed(value, decimals: decimals)
    }

    private static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20:
                let digits = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - digits.count) + digits
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }

    private static func padRight(_ text: String, _ width: Int) -> String {
        text + String(repeating: " ", count: max(width - text.count, 0))
    }

    private static func padLeft(_ text: String, _ width: Int) -> String {
        String(repeating: " ", count: max(width - text.count, 0)) + text
    }
}
