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
            exit(2)
        }
        if !(await self.run(options)) { exit(1) }
    }

    /// Runs the selected scenarios and prints the report to standard output.
    ///
    /// `@concurrent` so that the measuring task runs on the global concurrent executor, as a
    /// service's caller would, and not on the main actor.
    /// - Parameter options: What to run and how to report it.
    /// - Returns: `false` when a scenario failed or the filters select nothing.
    @concurrent
    private static func run(_ options: Options) async -> Bool {
        let harness = Harness(options: options)
        var comparisons: [Comparison] = []
        for scenario in Catalog.makeScenarios() where scenario.metrics.contains(where: { options.selects($0.name) }) {
            do {
                let results = try await harness.measure(scenario) { StandardError.writeLine($0) }
                comparisons += results.filter { options.selects($0.metric.name) }
            } catch {
                let names = scenario.metrics.map(\.name).joined(separator: ", ")
                StandardError.writeLine("error: \(names) failed: \(error)")
                return false
            }
        }
        if comparisons.isEmpty {
            StandardError.writeLine("error: no scenario matches \(options.filters)")
            return false
        }
        print(options.json ? Report.json(comparisons) : Report.table(comparisons))
        return true
    }
}
