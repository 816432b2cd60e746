/// A first-in first-out buffer on a circular array that grows by doubling.
struct RingBuffer<Element> {
    private var storage: [Element?]
    private var head = 0
    private(set) var count = 0

    init(initialCapacity: Int = 16) {
        self.storage = Array(repeating: nil, count: max(initialCapacity, 1))
    }

    var isEmpty: Bool { self.count == 0 }

    mutating func append(_ element: Element) {
        if self.count == self.storage.count { self.grow() }
        self.storage[(self.head + self.count) % self.storage.count] = element
        self.count += 1
    }

    mutating func popFirst() -> Element? {
        guard self.count > 0 else { return nil }
        let element = self.storage[self.head]
        self.storage[self.head] = nil
        self.head = (self.head + 1) % self.storage.count
        self.count -= 1
        return element
    }

    var first: Element? {
        self.count > 0 ? self.storage[self.head] : nil
    }

    private mutating func grow() {
        var grown = [Element?](repeating: nil, count: self.storage.count * 2)
        for offset in 0..<self.count {
            grown[offset] = self.storage[(self.head + offset) % self.storage.count]
        }
        self.storage = grown
        self.head = 0
    }
}
