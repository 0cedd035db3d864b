import Exchange

extension LedgerReader {
    /// A reader of the home's archive and ledger, for commands other than serve.
    public init(home: Home) throws {
        self.init(archive: try Setup.openArchive(home: home), key: try NodeKey.load(home: home).verifierKey)
    }
}
