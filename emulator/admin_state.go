package emulator

import "sync"

// adminState is what the admin API keeps beside the tenants: a lock that
// serialises read-modify-write changes of configuration, and the
// configuration each tenant created at runtime was created with (what a
// reset of that tenant returns to).
type adminState struct {
	mu      sync.Mutex
	created map[string]TenantConfig // runtime tenants -> creation config
}
