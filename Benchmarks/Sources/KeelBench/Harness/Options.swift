/// The command line of `keel-bench`, parsed by hand.
struct Options: Sendable {
    /// Print one JSON array instead of a table.
    var json = false
    /// Run only scenarios whose name starts with one of these; all when empty.
    var filters: [String] = []
    /// One short round per scenario: a smoke run for CI.
    var quick = false
    /// Measured rounds per scenario, each running ours and the baseline once.
    var rounds = 7
    /// The regression gate's factor: when set, a metric fails when its ratio exceeds this many
    /// times its ``Metric/reference``. `nil` runs no gate.
    var maximumRegression: Double?

    /// The factor `--check` uses: generous enough for a one-round quick run on a busy 2-core
    /// machine, tight enough that a 10× regression fails.
    static let defaultMaximumRegression = 3.0

    static let usage = """
        USAGE: keel-bench [--json] [--quick] [--filter PREFIX]... [--rounds N]
                          [--check | --max-regression FACTOR]

        Runs each scenario's Keel code path and its baseline interleaved in one process and
        reports the median ns per unit of each (bytes per unit for a size) and their ratio
        (ours / baseline).

        OPTIONS:
          --json            Print exactly one JSON array to stdout, one object per scenario.
          --quick           One short round per scenario (CI smoke run).
          --filter PREFIX   Run only scenarios whose name starts with PREFIX; repeatable.
          --rounds N        Measured rounds per scenario (default 7; 1 with --quick).
          --check           Ratio gate: exit with status 3 when a metric's ratio exceeds 3 times
                            its recorded goal or ratio, in its first measurement and in four
                            more (5 rounds each, 3 s apart); one line per metric on stderr.
          --max-regression FACTOR
                            The same gate with another factor (above 0).
          -h, --help        Print this help.
        """

    /// What the command line asks for.
    enum Parsed: Sendable {
        case run(Options)
        case help
    }

    /// Parses the arguments after the program name.
    /// - Parameter arguments: The arguments.
    /// - Returns: The options, or a request for help.
    /// - Throws: ``UsageError`` for an unknown or incomplete argument.
    static func parse(_ arguments: some Sequence<String>) throws(UsageError) -> Parsed {
        var options = Options()
        var roundsGiven = false
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "--json":
                options.json = true
            case "--quick":
                options.quick = true
            case "--filter":
                guard let prefix = iterator.next() else { throw UsageError("--filter needs a prefix") }
                options.filters.append(prefix)
            case "--rounds":
                guard let text = iterator.next(), let rounds = Int(text), rounds >= 1 else {
                    throw UsageError("--rounds needs a positive integer")
                }
                options.rounds = rounds
                roundsGiven = true
            case "--check":
                options.maximumRegression = options.maximumRegression ?? Self.defaultMaximumRegression
            case "--max-regression":
                guard let text = iterator.next(), let factor = Double(text), factor > 0, factor.isFinite else {
                    throw UsageError("--max-regression needs a positive number")
                }
                options.maximumRegression = factor
            case "-h", "--help":
                return .help
            default:
                if argument.hasPrefix("--filter=") {
                    options.filters.append(String(argument.dropFirst("--filter=".count)))
                } else {
                    throw UsageError("unknown argument '\(argument)'")
                }
            }
        }
        if options.quick && !roundsGiven { options.rounds = 1 }
        return .run(options)
    }

    /// Whether a metric is selected by the filters.
    /// - Parameter name: The metric's name.
    /// - Returns: `true` when no filter is given or one is a prefix of `name`.
    func selects(_ name: String) -> Bool {
        self.filters.isEmpty || self.filters.contains { name.hasPrefix($0) }
    }
}
