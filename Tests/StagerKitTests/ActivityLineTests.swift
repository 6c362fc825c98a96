import Testing

@testable import StagerKit

@Suite("Request activity from nginx's syslog lines")
struct ActivityLineTests {
    @Test func theHostIsReadFromNginxsDatagramAndNothingElse() {
        #expect(ActivityLine.host(inDatagram: "<190>Dec  2 12:59:12 stager: Feature-7.preview.localhost") == "feature-7.preview.localhost")
        for junk in [
            "", "hello", "GET / HTTP/1.1", "<190>Dec  2 12:59:12 nginx: a.preview.localhost", "<190>Dec  2 12:59:12 stager: ",
            "Dec  2 12:59:12 stager: no.priority", "<190>Dec  2 12:59:12 stager: bad host;rm",
        ] {
            #expect(ActivityLine.host(inDatagram: junk) == nil, "\(junk)")
        }
    }
}
