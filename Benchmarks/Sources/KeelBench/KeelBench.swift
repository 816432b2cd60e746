#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `keel-bench`: Keel's code paths against bare-primitive baselines, in one process.
@main
struct KeelBench {
    /// The exit status when a scenario fails or the filters select nothing.
    static let failureStatus: Int32 = 1
    /// The exit status for a command line that cannot be parsed.
    static let usageStatus: Int32 = 2
    /// The exit status when the ratio gate (`--check`) finds a regression.
    static let regressionStatus: Int32 = 3

    static func main() async {
        let options: Options
        do {
            switch try Options.parse(CommandLine.arguments.dropFirst()) {
            case .help:
                print(Options.usage)
                return
            case .run(let parsed):
                options = parsed
            }
        } catch {
            StandardError.writeLine("error: \(error)\n\n\(Options.usage)")
            exit(Self.usageStatus)
        }
        let status = await self.run(options)
        if status != 0 { exit(status) }
    }

    /// Runs the selected scenarios, prints the report to standard output and, with a gate, checks
    /// every ratio.
    ///
    /// `@concurrent` so that the measuring task runs on the global concurrent executor, as a
    /// service's caller would, and not on the main actor.
    /// - Parameter options: What to run and how to report it.
    /// - Returns: The exit status: 0, ``failureStatus`` when a scenario failed or the filters
    ///   select nothing, ``regressionStatus`` when the gate failed.
    @concurrent
    private static func run(_ options: Options) async -> Int32 {
        let harness = Harness(options: options)
        var comparisons: [Comparison] = []
        for scenario in Catalog.makeScenarios() where scenario.metrics.contains(where: { options.selects($0.name) }) {
            do {
                let results = try await harness.measure(scenario) { StandardError.writeLine($0) }
                comparisons += results.filter { options.selects($0.metric.name) }
            } catch {
                let names = scenario.metrics.map(\.name).joined(separator: ", ")
                StandardError.writeLine("error: \(names) failed: \(error)")
                return Self.failureStatus
            }
        }
        if comparisons.isEmpty {
            StandardError.writeLine("error: no scenario matches \(options.filters)")
            return Self.failureStatus
        }
        print(options.json ? Report.json(comparisons) : Report.table(comparisons))
        guard let factor = options.maximumRegression else { return 0 }
        return await self.check(comparisons, gate: Gate(factor: factor), harness: harness)
    }

    /// The ratio gate: one line per metric on standard error; a metric over its bound is measured
    /// again with a fresh instance of its scenario and at least ``Gate/retryRounds`` rounds, up to
    /// ``Gate/retries`` times.
    /// - Parameters:
    ///   - comparisons: The report's measurements.
    ///   - gate: The gate.
    ///   - harness: The harness that measured them; measuring again uses its options with more
    ///     rounds.
    /// - Returns: 0 when every metric passed, ``regressionStatus`` otherwise.
    private static func check(_ comparisons: [Comparison], gate: Gate, harness: Harness) async -> Int32 {
        var options = harness.options
        options.rounds = max(options.rounds, Gate.retryRounds)
        let harness = Harness(options: options)
        var failed: [String] = []
        for comparison in comparisons {
            var current = comparison
            var attempt = 1
            StandardError.writeLine(gate.line(for: current, attempt: attempt))
            while !gate.passes(current) && attempt <= Gate.retries {
                attempt += 1
                try? await Task.sleep(for: Gate.retryPause)
                let name = current.metric.name
                guard let scenario = Catalog.makeScenarios().first(where: { $0.metrics.contains { $0.name == name } })
                else { break }
                do {
                    let results = try await harness.measure(scenario) { StandardError.writeLine($0) }
                    guard let again = results.first(where: { $0.metric.name == name }) else { break }
                    current = again
                    StandardError.writeLine(gate.line(for: current, attempt: attempt))
                } catch {
                    StandardError.writeLine("error: \(name) failed while measured again: \(error)")
                    break
                }
            }
            if !gate.passes(current) { failed.append(current.metric.name) }
        }
        guard failed.isEmpty else {
            let factor = Report.fixed(gate.factor, decimals: 1)
            StandardError.writeLine(
                "error: ratio gate: \(failed.joined(separator: ", ")) over \(factor) × the recorded goal or ratio "
                    + "in \(Gate.retries + 1) measurements"
            )
            return Self.regressionStatus
        }
        StandardError.writeLine("ratio gate: \(comparisons.count) metrics within the bound")
        return 0
    }
}
