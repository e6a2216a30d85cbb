package relay

// trimAfterFirstScrape gives back what append left unused in the arrays the
// first scrape filled (up to a quarter of the cache entries and of the label
// table, about 10 bytes a series): a target's series barely change after
// it, so the spare room would be kept for the life of the target.
func (c *TargetCache) trimAfterFirstScrape() {
	c.trimmed = true
	c.entries.trim()
	c.labels.Trim()
}
