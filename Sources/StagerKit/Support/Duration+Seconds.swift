extension Duration {
    /// The duration in seconds, for JSON, comparisons with `TimeInterval` and printing.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
