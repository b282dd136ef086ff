package debroot

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// A stub stands in for a library nothing on the box's code paths calls:
// the dynamic loader needs every DT_NEEDED library to exist, to define the
// symbol versions the others ask for, and to define every symbol that is
// bound at load time. The stub does all of that and nothing else: each
// function writes "boxswarm stub: <library>: <symbol> called" to standard
// error and ends the process with status 127; each data object is zeros.
//
// Stubs are assembled and linked with the cross binutils the board's
// kernel is built with (binutils-aarch64-linux-gnu, pulled in by
// gcc-aarch64-linux-gnu).

// binutilsPrefix is the cross tool prefix per Debian architecture.
var binutilsPrefix = map[string]string{"arm64": "aarch64-linux-gnu-"}

// stubSymbol is one symbol a stub defines.
type stubSymbol struct {
	name    string
	version string // empty: unversioned
	hidden  bool   // name@version rather than name@@version
	kind    elf.SymType
	size    uint64
}

// export is a symbol an original library defines.
type export struct {
	version string
	hidden  bool
	kind    elf.SymType
	size    uint64
}

type libExports struct {
	byName   map[string][]export
	versions []string // defined versions, in index order, without the base one
}

func readExports(file string) (*libExports, error) {
	f, err := elf.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	syms, err := f.DynamicSymbols()
	if err != nil {
		return nil, err
	}
	e := &libExports{byName: map[string][]export{}}
	vers, err := f.DynamicVersions()
	if err == nil {
		for _, v := range vers {
			if v.Flags&elf.VER_FLG_BASE == 0 {
				e.versions = append(e.versions, v.Name)
			}
		}
	}
	for _, s := range syms {
		b := elf.ST_BIND(s.Info)
		if s.Section == elf.SHN_UNDEF || (b != elf.STB_GLOBAL && b != elf.STB_WEAK) {
			continue
		}
		if elf.ST_TYPE(s.Info) == elf.STT_SECTION || elf.ST_TYPE(s.Info) == elf.STT_FILE {
			continue
		}
		x := export{kind: elf.ST_TYPE(s.Info), size: s.Size}
		if s.HasVersion && s.VersionIndex.Index() > 1 {
			x.version, x.hidden = s.Version, s.VersionIndex.IsHidden()
		}
		e.byName[s.Name] = append(e.byName[s.Name], x)
	}
	return e, nil
}

// find returns the export a reference to name (at version, if set) binds
// to.
func (e *libExports) find(name, version string) (export, bool) {
	for _, x := range e.byName[name] {
		if version == "" && !x.hidden || version != "" && x.version == version {
			return x, true
		}
	}
	return export{}, false
}

// writeStubs writes a stub for each stubbed object, defining what the
// kept objects import from it.
func writeStubs(ctx context.Context, arch, root string, objs, stubbed []*object) error {
	prefix, ok := binutilsPrefix[arch]
	if !ok {
		return fmt.Errorf("no cross binutils known for %s", arch)
	}
	stubs := map[string]*libExports{} // soname -> original exports
	var kept []*object
	keptExports := map[string]*libExports{}
	for _, o := range objs {
		e, err := readExports(o.file)
		if err != nil {
			return fmt.Errorf("%s: %w", o.name, err)
		}
		if o.stub {
			stubs[path.Base(o.name)] = e
		} else {
			kept = append(kept, o)
			keptExports[o.name] = e
		}
	}
	want := map[string]map[string]stubSymbol{} // soname -> key -> symbol
	define := func(lib, name, version string, x export) {
		if want[lib] == nil {
			want[lib] = map[string]stubSymbol{}
		}
		want[lib][name+"@"+version] = stubSymbol{name: name, version: version, hidden: x.hidden, kind: x.kind, size: x.size}
	}
	for _, o := range kept {
		f, err := elf.Open(o.file)
		if err != nil {
			return err
		}
		syms, err := f.DynamicSymbols()
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", o.name, err)
		}
		for _, s := range syms {
			if s.Section != elf.SHN_UNDEF || s.Name == "" {
				continue
			}
			if s.Library != "" {
				// A versioned reference names its library.
				e, ok := stubs[s.Library]
				if !ok {
					continue
				}
				x, found := e.find(s.Name, s.Version)
				if !found {
					x = export{version: s.Version, kind: elf.STT_FUNC}
				}
				x.version, x.hidden = s.Version, false
				define(s.Library, s.Name, s.Version, x)
				continue
			}
			// An unversioned reference binds to the first library in
			// load order that defines it; a real one wins.
			real := false
			for _, k := range kept {
				if _, ok := keptExports[k.name].find(s.Name, ""); ok {
					real = true
					break
				}
			}
			if real {
				continue
			}
			for _, st := range stubbed {
				lib := path.Base(st.name)
				if x, ok := stubs[lib].find(s.Name, ""); ok {
					define(lib, s.Name, x.version, x)
					break
				}
			}
		}
	}
	for _, st := range stubbed {
		lib := path.Base(st.name)
		if err := linkStub(ctx, prefix, root, st.name, lib, stubs[lib].versions, want[lib]); err != nil {
			return fmt.Errorf("stub for %s: %w", lib, err)
		}
	}
	return nil
}

// linkStub assembles and links one stub into root at name.
func linkStub(ctx context.Context, prefix, root, name, soname string, versions []string, syms map[string]stubSymbol) error {
	keys := make([]string, 0, len(syms))
	for k := range syms {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var asm, rodata, data, tls bytes.Buffer
	asm.WriteString("\t.text\n\t.p2align 2\n.Ltrap:\n" +
		"\tmov x2, x1\n\tmov x1, x0\n\tmov x0, #2\n\tmov x8, #64\n\tsvc #0\n" + // write(2, msg, len)
		"\tmov x0, #127\n\tmov x8, #94\n\tsvc #0\n") // exit_group(127)
	rodata.WriteString("\t.section .rodata\n")
	data.WriteString("\t.data\n")
	tls.WriteString("\t.section .tbss,\"awT\",%nobits\n")
	for i, k := range keys {
		s := syms[k]
		impl := s.name
		if s.version != "" {
			impl = fmt.Sprintf("__stub_%d", i)
		}
		var w *bytes.Buffer
		switch s.kind {
		case elf.STT_OBJECT, elf.STT_COMMON:
			w = &data
			fmt.Fprintf(w, "\t.globl %s\n\t.type %s, %%object\n\t.size %s, %d\n\t.p2align 4\n%s:\n\t.zero %d\n", impl, impl, impl, max(s.size, 1), impl, max(s.size, 1))
		case elf.STT_TLS:
			w = &tls
			fmt.Fprintf(w, "\t.globl %s\n\t.type %s, %%tls_object\n\t.size %s, %d\n\t.p2align 4\n%s:\n\t.zero %d\n", impl, impl, impl, max(s.size, 1), impl, max(s.size, 1))
		default: // functions, ifuncs and untyped code
			w = &asm
			msg := fmt.Sprintf("boxswarm stub: %s: %s called\n", soname, s.name)
			fmt.Fprintf(&rodata, ".Lmsg%d:\n\t.ascii %s\n", i, strconv.Quote(msg))
			fmt.Fprintf(w, "\t.globl %s\n\t.type %s, %%function\n%s:\n\tadrp x0, .Lmsg%d\n\tadd x0, x0, :lo12:.Lmsg%d\n\tmov x1, #%d\n\tb .Ltrap\n", impl, impl, impl, i, i, len(msg))
		}
		if s.version != "" {
			at := "@@"
			if s.hidden {
				at = "@"
			}
			fmt.Fprintf(w, "\t.symver %s, %s%s%s, remove\n", impl, s.name, at, s.version)
		}
	}
	work, err := os.MkdirTemp("", "stub-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	src := filepath.Join(work, "stub.s")
	all := asm.String() + rodata.String() + data.String() + tls.String() + "\t.section .note.GNU-stack,\"\",%progbits\n"
	if err := os.WriteFile(src, []byte(all), 0o644); err != nil {
		return err
	}
	obj := filepath.Join(work, "stub.o")
	if out, err := exec.CommandContext(ctx, prefix+"as", "-o", obj, src).CombinedOutput(); err != nil {
		return fmt.Errorf("%sas: %w\n%s", prefix, err, out)
	}
	args := []string{"-shared", "-soname", soname, "--build-id=none", "--hash-style=both", "-z", "noexecstack", "-o", filepath.Join(root, filepath.FromSlash(name))}
	if len(versions) > 0 {
		// Every version the library defined, so that any version a kept
		// object needs from it exists; symbols not named stay unversioned.
		var vs strings.Builder
		for _, v := range versions {
			fmt.Fprintf(&vs, "%s { };\n", v)
		}
		script := filepath.Join(work, "versions")
		if err := os.WriteFile(script, []byte(vs.String()), 0o644); err != nil {
			return err
		}
		args = append(args, "--version-script", script)
	}
	args = append(args, obj)
	if err := os.MkdirAll(filepath.Join(root, filepath.Dir(filepath.FromSlash(name))), 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, prefix+"ld", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%sld: %w\n%s", prefix, err, out)
	}
	return nil
}
