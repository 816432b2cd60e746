/// The services of a host and what each depends on: verification and start order.
struct DependencyGraph {
    /// Services in registration order, with their declared dependencies.
    var services: [(name: ServiceName, dependencies: [ServiceName])]

    /// Checks that every dependency is registered and that there is no cycle.
    func verify() throws(HostError) {
        let known = Set(self.services.map(\.name))
        for service in self.services {
            for dependency in service.dependencies where !known.contains(dependency) {
                throw HostError(
                    code: .missingDependency,
                    services: [service.name, dependency],
                    message: "\(service.name) depends on \(dependency), which is not registered"
                )
            }
        }
        if let cycle = self.findCycle() {
            throw HostError(
                code: .dependencyCycle,
                services: cycle,
                message: "dependency cycle: " + cycle.map(\.rawValue).joined(separator: " → ")
            )
        }
    }

    private func findCycle() -> [ServiceName]? {
        let edges = Dictionary(self.services.map { ($0.name, $0.dependencies) }, uniquingKeysWith: { $0 + $1 })
        enum Mark { case visiting, done }
        var marks: [ServiceName: Mark] = [:]
        var path: [ServiceName] = []
        func visit(_ name: ServiceName) -> [ServiceName]? {
            switch marks[name] {
            case .done: return nil
            case .visiting:
                let start = path.firstIndex(of: name)!
                return Array(path[start...]) + [name]
            case nil: break
            }
            marks[name] = .visiting
            path.append(name)
            for dependency in edges[name] ?? [] {
                if let cycle = visit(dependency) { return cycle }
            }
            path.removeLast()
            marks[name] = .done
            return nil
        }
        for service in self.services {
            if let cycle = visit(service.name) { return cycle }
        }
        return nil
    }

    /// Services grouped in levels: each depends only on services of earlier levels. Within a
    /// level, registration order. Requires a verified graph.
    func levels() -> [[ServiceName]] {
        var level: [ServiceName: Int] = [:]
        let edges = Dictionary(self.services.map { ($0.name, $0.dependencies) }, uniquingKeysWith: { $0 + $1 })
        func depth(_ name: ServiceName) -> Int {
            if let known = level[name] { return known }
            let value = (edges[name] ?? []).map { depth($0) + 1 }.max() ?? 0
            level[name] = value
            return value
        }
        var result: [[ServiceName]] = []
        for service in self.services {
            let index = depth(service.name)
            while result.count <= index { result.append([]) }
            result[index].append(service.name)
        }
        return result
    }
}
