package rollback

// Linux TPM character devices.
const (
	// DevTPM talks to the TPM directly and admits one user at a time.
	DevTPM = "/dev/tpm0"
	// DevTPMRM goes through the kernel's resource manager and may be shared.
	DevTPMRM = "/dev/tpmrm0"
)
