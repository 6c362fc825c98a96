/// Secrets compared in time that depends only on their lengths.
enum ConstantTime {
    static func equal(_ offered: String, _ secret: String) -> Bool {
        let a = Array(offered.utf8)
        let b = Array(secret.utf8)
        var difference = a.count ^ b.count
        for index in 0..<max(a.count, b.count) {
            difference |= Int((index < a.count ? a[index] : 0) ^ (index < b.count ? b[index] : 0))
        }
        return difference == 0
    }
}
