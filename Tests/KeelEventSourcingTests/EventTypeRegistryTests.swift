import KeelEventSourcing
import Testing

@Suite("Event type registry", .timeLimit(.minutes(2)))
struct EventTypeRegistryTests {
    @Test("registered types are found by name, with their upcasters")
    func lookups() {
        var registry = EventTypeRegistry()
        registry.register(ItemAdded.self, upcasters: [Upcasters.typedV1ToV2])
        registry.register(Upcasters.rawV2ToV3)
        registry.register(MoneyDeposited.self)
        registry.register(MoneyDeposited.self)  // the same type again: allowed

        #expect(registry.eventTypes == ["account.deposited", "cart.item-added"])
        #expect(registry.registeredType(named: "cart.item-added") == ItemAdded.self)
        #expect(registry.registeredType(named: "account.deposited") == MoneyDeposited.self)
        #expect(registry.registeredType(named: "account.opened") == nil)
        #expect(registry.upcaster(for: "cart.item-added", from: 1)?.targetVersion == 2)
        #expect(registry.upcaster(for: "cart.item-added", from: 2)?.targetVersion == 3)
        #expect(registry.upcaster(for: "cart.item-added", from: 3) == nil)
        #expect(registry.missingUpcasters(for: "cart.item-added") == [])
        #expect(registry.missingUpcasters(for: "account.deposited") == [])
        #expect(registry.missingUpcasters(for: "nothing.registered") == [])
    }

    @Test("every registered chain of the fixtures is complete")
    func completeChains() {
        for kind in ChainKind.allCases {
            let registry = Fixtures.serializer(kind).registry
            for name in registry.eventTypes {
                #expect(registry.missingUpcasters(for: name) == [], "\(kind): \(name)")
            }
        }
    }

    @Test("upcasters registered before their type are checked when it arrives")
    func upcastersFirst() {
        var registry = EventTypeRegistry()
        registry.register(Upcasters.typedV2ToV3)
        #expect(registry.eventTypes == [], "an upcaster alone registers no type")
        #expect(registry.missingUpcasters(for: ItemAdded.eventType) == [])
        registry.register(ItemAdded.self)
        #expect(registry.missingUpcasters(for: ItemAdded.eventType) == [1])
    }

    @Test("two Swift types under one type name stop the program")
    func duplicateName() async {
        await #expect(processExitsWith: .failure) {
            var registry = EventTypeRegistry()
            registry.register(ItemAdded.self)
            registry.register(ImpostorItemAdded.self)
        }
    }

    @Test("two upcasters from one version stop the program")
    func duplicateUpcaster() async {
        await #expect(processExitsWith: .failure) {
            _ = EventTypeRegistry([ItemAdded.self], upcasters: [Upcasters.typedV1ToV2, Upcasters.rawV1ToV2])
        }
    }

    @Test("an upcaster from the current version or later stops the program, in either order")
    func upcasterBeyondCurrent() async {
        await #expect(processExitsWith: .failure) {
            var registry = EventTypeRegistry()
            registry.register(ShortLived.self)
            registry.register(EventUpcaster.raw(ShortLived.eventType, from: 2) { $0 })
        }
        await #expect(processExitsWith: .failure) {
            var registry = EventTypeRegistry()
            registry.register(EventUpcaster.raw(ShortLived.eventType, from: 3) { $0 })
            registry.register(ShortLived.self)
        }
    }

    @Test("an upcaster of another type name given with a type stops the program")
    func upcasterOfAnotherType() async {
        await #expect(processExitsWith: .failure) {
            var registry = EventTypeRegistry()
            registry.register(MoneyDeposited.self, upcasters: [Upcasters.rawV1ToV2])
        }
    }

    @Test("an upcaster from a version below 1 stops the program")
    func upcasterBelowOne() async {
        await #expect(processExitsWith: .failure) {
            _ = EventUpcaster.raw(ItemAdded.eventType, from: 0) { $0 }
        }
    }
}
