package embedded

// CloseDatastore closes the datastore under a running server: the fault of a
// database that went away.
func (e *Engine) CloseDatastore() { e.ds.Close() }
