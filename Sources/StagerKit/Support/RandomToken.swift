/// 256 random bits as hex, from the system's secure generator: secrets kept in the store, session ids.
enum RandomToken {
    static func hex() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<4).map { _ in
            let word = String(generator.next(), radix: 16)
            return String(repeating: "0", count: 16 - word.count) + word
        }.joined()
    }
}
