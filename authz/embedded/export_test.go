package embedded

// CloseDatastore closes the datastore under a running server: the fault of a
// database that went away.
func (e *Engine) CloseDatastore() { e.ds.Close() }

// WaitStats waits for a background statistics refresh to finish.
func (e *Engine) WaitStats() {
	if e.stats != nil {
		e.stats.wg.Wait()
	}
}
