import Consent
import Foundation
import Testing

@Suite struct JCSTests {
    func canonical(_ json: String) throws -> String {
        String(decoding: JCS.canonicalize(try JCS.parse(Data(json.utf8))), as: UTF8.self)
    }

    /// RFC 8785 §3.2.2's example without its "numbers" member (only integers are supported).
    @Test func rfc8785StringsAndLiterals() throws {
        let input = #"""
            {
              "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
              "literals": [null, true, false]
            }
            """#
        #expect(try canonical(input) == #"{"literals":[null,true,false],"string":"€$\u000f\nA'B\"\\\\\"/"}"#)
    }

    /// RFC 8785 §3.2.2's full example has non-integer numbers: refused, never reinterpreted.
    @Test func rfc8785NumbersAreRefused() {
        let input = #"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001]}"#
        #expect(throws: ConsentError.self) { try JCS.parse(Data(input.utf8)) }
    }

    /// RFC 8785 §3.2.3: member names sorted by UTF-16 code units (the emoji's surrogates sort
    /// before U+FB33, although its code point is greater).
    @Test func rfc8785Sorting() throws {
        let input = #"""
            {
              "\u20ac": "Euro Sign",
              "\r": "Carriage Return",
              "\ufb33": "Hebrew Letter Dalet With Dagesh",
              "1": "One",
              "\ud83d\ude00": "Emoji: Grinning Face",
              "\u0080": "Control",
              "\u00f6": "Latin Small Letter O With Diaeresis"
            }
            """#
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\","
            + "\"\u{F6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20AC}\":\"Euro Sign\","
            + "\"\u{1F600}\":\"Emoji: Grinning Face\",\"\u{FB33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        #expect(try canonical(input) == expected)
        // The UTF-8 bytes RFC 8785 §3.2.4 lists for this output.
        let hex = JCS.canonicalize(try JCS.parse(Data(input.utf8))).map { String(format: "%02x", $0) }.joined()
        #expect(hex == "7b225c72223a2243617272696167652052657475726e222c2231223a224f6e65222c22c280223a22436f6e74726f6c22"
            + "2c22c3b6223a224c6174696e20536d616c6c204c6574746572204f2057697468204469616572657369732"
            + "22c22e282ac223a224575726f205369676e222c22f09f9880223a22456d6f6a693a204772696e6e696e672046"
            + "616365222c22efacb3223a22486562726577204c65747465722044616c657420576974682044616765736822"
            + "7d")
    }

    /// RFC 8785 Appendix B: integers (the ones in the safe range) and -0.
    @Test func rfc8785Integers() throws {
        #expect(try canonical("[0, -0, 1, -1, 9007199254740991, -9007199254740991, 295]") == "[0,0,1,-1,9007199254740991,-9007199254740991,295]")
        #expect(throws: ConsentError.self) { try JCS.parse(Data("9007199254740992".utf8)) }
        #expect(throws: ConsentError.self) { try JCS.parse(Data("1e3".utf8)) }
        #expect(throws: ConsentError.self) { try JCS.parse(Data("01".utf8)) }
    }

    @Test func nestedObjectsAndEscapes() throws {
        let v = ConsentJSON.object([
            "b": .object(["z": .integer(1), "a": .string("x\u{1}\u{7F}\u{2028}/")]),
            "a": .array([.string("é"), .null]),
        ])
        #expect(String(decoding: JCS.canonicalize(v), as: UTF8.self)
                == "{\"a\":[\"é\",null],\"b\":{\"a\":\"x\\u0001\u{7F}\u{2028}/\",\"z\":1}}")
        #expect(try JCS.parse(JCS.canonicalize(v)) == v)
        #expect(try JCS.parse(JCS.pretty(v)) == v)
    }

    @Test func strictParsing() {
        for bad in [#"{"a":1,"a":2}"#, #"{"a":"\ud800"}"#, #"{"a":"\udc00x"}"#, "{\"a\":\"\u{1}\"}", "{\"a\":1} x",
                    "{'a':1}", "[1,]", "", "\u{FEFF}{}", "{\"a\":tru}"] {
            #expect(throws: ConsentError.self, "\(bad)") { try JCS.parse(Data(bad.utf8)) }
        }
        #expect(throws: ConsentError.self) { try JCS.parse(Data([0x22, 0xFF, 0x22])) }
        #expect(throws: ConsentError.self) {
            try JCS.parse(Data((String(repeating: "[", count: 40) + String(repeating: "]", count: 40)).utf8))
        }
    }
}
