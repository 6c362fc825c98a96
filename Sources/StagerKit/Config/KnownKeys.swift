import Yams

/// Rejects keys the configuration does not know, so a typo is an error rather than a silently ignored setting.
enum KnownKeys {
    indirect enum Shape: Sendable {
        case leaf
        case mapping([String: Shape])
        /// A mapping whose keys are chosen by the user (repository names, variable names).
        case anyKeys(Shape)
    }

    /// Read off `ConfigFile`'s own Decodable conformance, so the keys the loader decodes are the keys it
    /// accepts: one schema, not two to keep in step.
    static let root: Shape = SchemaProbe.shape(of: ConfigFile.self)

    static func check(_ node: Node, file: String) throws {
        try check(node, shape: root, path: "", file: file)
    }

    private static func check(_ node: Node, shape: Shape, path: String, file: String) throws {
        guard let mapping = node.mapping else { return }
        for (keyNode, value) in mapping {
            let key = keyNode.string ?? "\(keyNode)"
            let keyPath = path.isEmpty ? key : "\(path).\(key)"
            switch shape {
            case .leaf:
                return
            case .anyKeys(let inner):
                try check(value, shape: inner, path: keyPath, file: file)
            case .mapping(let known):
                guard let inner = known[key] else {
                    let choices = known.keys.sorted().joined(separator: ", ")
                    throw ConfigError(file: file, key: keyPath, message: "unknown key; known keys here: \(choices)")
                }
                try check(value, shape: inner, path: keyPath, file: file)
            }
        }
    }
}

/// Learns a Decodable type's keys by decoding it from nothing: every optional key it asks for is recorded
/// (and answered "absent"); a type that asks for all keys (a dictionary) takes any key, with the shape of
/// its values. Works for types whose every property is optional, as `ConfigFile`'s are.
enum SchemaProbe {
    static func shape<T: Decodable>(of type: T.Type) -> KnownKeys.Shape {
        let recorder = Recorder()
        // A type the probe cannot decode from nothing is taken as a value (a leaf).
        guard (try? T(from: ProbeDecoder(recorder: recorder))) != nil else { return .leaf }
        return recorder.shape
    }

    /// What one level asked for.
    final class Recorder {
        var keys: [String: KnownKeys.Shape] = [:]
        var anyKeys: KnownKeys.Shape?
        var isMapping = false

        var shape: KnownKeys.Shape {
            if let anyKeys { return .anyKeys(anyKeys) }
            return isMapping ? .mapping(keys) : .leaf
        }
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    struct ProbeDecoder: Decoder {
        let recorder: Recorder
        var codingPath: [any CodingKey] = []
        var userInfo: [CodingUserInfoKey: Any] { [:] }

        func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
            recorder.isMapping = true
            return KeyedDecodingContainer(Keyed<Key>(recorder: recorder))
        }

        func unkeyedContainer() throws -> any UnkeyedDecodingContainer { Empty() }
        func singleValueContainer() throws -> any SingleValueDecodingContainer { Single() }
    }

    struct Keyed<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let recorder: Recorder
        var codingPath: [any CodingKey] { [] }

        /// A dictionary asks for its keys: it takes any, and one stand-in key shows its values' shape.
        var allKeys: [Key] {
            recorder.anyKeys = recorder.anyKeys ?? .leaf
            return Key(stringValue: "*").map { [$0] } ?? []
        }

        /// Every optional value of a plain type is asked for through here first: a leaf key.
        func contains(_ key: Key) -> Bool {
            if recorder.keys[key.stringValue] == nil { recorder.keys[key.stringValue] = .leaf }
            return false
        }
        func decodeNil(forKey key: Key) throws -> Bool { true }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            let inner = Recorder()
            let value = try T(from: ProbeDecoder(recorder: inner))
            if recorder.anyKeys != nil { recorder.anyKeys = inner.shape } else { recorder.keys[key.stringValue] = inner.shape }
            return value
        }

        func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
            recorder.keys[key.stringValue] = SchemaProbe.shape(of: T.self)
            return nil
        }

        func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
            KeyedDecodingContainer(Keyed<NestedKey>(recorder: Recorder()))
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer { Empty() }
        func superDecoder() throws -> any Decoder { ProbeDecoder(recorder: Recorder()) }
        func superDecoder(forKey key: Key) throws -> any Decoder { ProbeDecoder(recorder: Recorder()) }
    }

    /// An empty list.
    struct Empty: UnkeyedDecodingContainer {
        var codingPath: [any CodingKey] { [] }
        var count: Int? { 0 }
        var isAtEnd: Bool { true }
        var currentIndex: Int { 0 }

        struct End: Error {}
        mutating func decodeNil() throws -> Bool { true }
        mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { throw End() }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> { throw End() }
        mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer { throw End() }
        mutating func superDecoder() throws -> any Decoder { throw End() }
    }

    /// A value: the zero of its type.
    struct Single: SingleValueDecodingContainer {
        var codingPath: [any CodingKey] { [] }
        struct NotAValue: Error {}

        func decodeNil() -> Bool { false }
        func decode(_ type: Bool.Type) throws -> Bool { false }
        func decode(_ type: String.Type) throws -> String { "" }
        func decode(_ type: Double.Type) throws -> Double { 0 }
        func decode(_ type: Float.Type) throws -> Float { 0 }
        func decode(_ type: Int.Type) throws -> Int { 0 }
        func decode(_ type: Int8.Type) throws -> Int8 { 0 }
        func decode(_ type: Int16.Type) throws -> Int16 { 0 }
        func decode(_ type: Int32.Type) throws -> Int32 { 0 }
        func decode(_ type: Int64.Type) throws -> Int64 { 0 }
        func decode(_ type: UInt.Type) throws -> UInt { 0 }
        func decode(_ type: UInt8.Type) throws -> UInt8 { 0 }
        func decode(_ type: UInt16.Type) throws -> UInt16 { 0 }
        func decode(_ type: UInt32.Type) throws -> UInt32 { 0 }
        func decode(_ type: UInt64.Type) throws -> UInt64 { 0 }
        func decode<T: Decodable>(_ type: T.Type) throws -> T { try T(from: ProbeDecoder(recorder: Recorder())) }
    }
}
