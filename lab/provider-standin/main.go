// The lab's stand-in for the Omni Proxmox infra provider (siderolabs/omni-infra-provider-proxmox), run by the
// lab's docker stand-in when `docker compose up -d` starts the provider's container.
//
// Towards Omni it is the real thing: Omni's own infra-provider library (client/pkg/infra), the one the
// provider is built on, registers it (InfraProviderStatus with the providerdata schema), heartbeats
// (InfraProviderHealthStatus) and answers every MachineRequest for its id (MachineRequestStatus, finalizers,
// a state resource per request, teardown). Towards Proxmox it is this file's own provisioning code, written
// from the provider's behaviour, with the provider's token from its config file:
//
//   - pickNode: the class's pinned node (which must be online), or else the node with the fewest VMs tagged
//     for the same machine request set, then the largest share of free memory (ties by name, which the
//     provider leaves to its sort);
//   - uploadISO: the boot ISO onto the node's first enabled storage with `iso` content (download-url);
//   - syncVM: cores, sockets, memory, disks (each on the first storage, in the node's order, whose CEL
//     selector over name, node, storageType and availableSpace is true), NICs, the tag
//     `machine-request.<set id>`, named after the request, its VMID from /cluster/nextid;
//   - startVM: starts it;
//   - teardown: stops and deletes the VM it recorded.
//
// Nothing boots: a VM here is fakepve's record of one. Not modelled: the schematic (the Omni lab's image factory
// lives in Omni's network namespace), the cloud-init ISO with the join config, PCI and USB passthrough.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/resource/meta"
	"github.com/cosi-project/runtime/pkg/resource/protobuf"
	"github.com/cosi-project/runtime/pkg/resource/typed"
	"github.com/google/cel-go/cel"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/structpb"
	"gopkg.in/yaml.v3"

	"github.com/siderolabs/omni/client/pkg/client"
	"github.com/siderolabs/omni/client/pkg/infra"
	"github.com/siderolabs/omni/client/pkg/infra/provision"
	omniinfra "github.com/siderolabs/omni/client/pkg/omni/resources/infra"
)

// The provider's id: the resource type and namespace of its per-request state are named after it.
var providerID = "proxmox"

// machineRequestTag is the Proxmox tag the provider puts on each VM of a machine request set.
func machineRequestTag(setID string) string { return "machine-request." + setID }

// ---------------------------------------------------------------------------------------- state resource

// Machine is the per-request state (Omni stores it in the provider's own namespace): node, VMID, UUID.
type Machine = typed.Resource[MachineSpec, MachineExtension]

// MachineSpec is a protobuf Struct: the stand-in needs no schema of its own for three values.
type MachineSpec = protobuf.ResourceSpec[structpb.Struct, *structpb.Struct]

// MachineExtension gives Machine its resource definition.
type MachineExtension struct{}

// ResourceDefinition implements typed.Extension.
func (MachineExtension) ResourceDefinition() meta.ResourceDefinitionSpec {
	return meta.ResourceDefinitionSpec{
		Type:             infra.ResourceType("Machine", providerID),
		DefaultNamespace: infra.ResourceNamespace(providerID),
	}
}

func stateString(m *Machine, key string) string {
	if v, ok := m.TypedSpec().Value.GetFields()[key]; ok {
		return v.GetStringValue()
	}
	return ""
}

func setState(m *Machine, key, value string) {
	if m.TypedSpec().Value.Fields == nil {
		m.TypedSpec().Value.Fields = map[string]*structpb.Value{}
	}
	m.TypedSpec().Value.Fields[key] = structpb.NewStringValue(value)
}

// ---------------------------------------------------------------------------------------- providerdata

type disk struct {
	DiskSize        int    `yaml:"disk_size"`
	StorageSelector string `yaml:"storage_selector"`
	DiskSSD         bool   `yaml:"disk_ssd"`
	DiskDiscard     bool   `yaml:"disk_discard"`
	DiskIOThread    bool   `yaml:"disk_iothread"`
	DiskCache       string `yaml:"disk_cache"`
	DiskAIO         string `yaml:"disk_aio"`
}

type nic struct {
	Bridge   string `yaml:"bridge"`
	VLAN     int    `yaml:"vlan"`
	Firewall *bool  `yaml:"firewall"`
}

type providerData struct {
	disk            `yaml:",inline"`
	Cores           int    `yaml:"cores"`
	Sockets         int    `yaml:"sockets"`
	Memory          int    `yaml:"memory"`
	Node            string `yaml:"node"`
	NetworkBridge   string `yaml:"network_bridge"`
	VLAN            int    `yaml:"vlan"`
	NetworkFirewall *bool  `yaml:"network_firewall"`
	CPUType         string `yaml:"cpu_type"`
	MachineType     string `yaml:"machine_type"`
	NUMA            bool   `yaml:"numa"`
	Hugepages       string `yaml:"hugepages"`
	Balloon         *bool  `yaml:"balloon"`
	AdditionalDisks []disk `yaml:"additional_disks"`
	AdditionalNICs  []nic  `yaml:"additional_nics"`
	// How a node is picked (spread, the default; fewer-vms; round-robin; binpack) and the Proxmox pool each VM
	// joins (unset: one named after its machine request set, made when missing).
	PlacementStrategy string `yaml:"placement_strategy"`
	Pool              string `yaml:"pool"`
}

// ---------------------------------------------------------------------------------------- Proxmox API

type proxmoxConfig struct {
	Proxmox struct {
		URL                string `yaml:"url"`
		TokenID            string `yaml:"tokenID"`
		TokenSecret        string `yaml:"tokenSecret"`
		InsecureSkipVerify bool   `yaml:"insecureSkipVerify"`
	} `yaml:"proxmox"`
}

type pve struct {
	base, auth string
	http       *http.Client
}

type pveError struct {
	status int
	msg    string
}

func (e *pveError) Error() string { return fmt.Sprintf("proxmox: %d %s", e.status, e.msg) }

// call makes one API call; out, when not nil, receives the answer's `data`.
func (p *pve) call(ctx context.Context, method, path string, form url.Values, out any) error {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+"/"+strings.TrimPrefix(path, "/"), body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", p.auth)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close() //nolint:errcheck
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var answer struct {
			Message string            `json:"message"`
			Errors  map[string]string `json:"errors"`
		}
		_ = json.Unmarshal(raw, &answer)
		msg := strings.TrimSpace(answer.Message)
		if msg == "" {
			msg = strings.TrimSpace(resp.Status)
		}
		for k, v := range answer.Errors {
			msg += fmt.Sprintf(" (%s: %s)", k, strings.TrimSpace(v))
		}
		return &pveError{resp.StatusCode, msg}
	}
	if out == nil {
		return nil
	}
	var envelope struct {
		Data json.RawMessage `json:"data"`
	}
	if err = json.Unmarshal(raw, &envelope); err != nil {
		return err
	}
	return json.Unmarshal(envelope.Data, out)
}

// waitTask polls a task until it stops; its failure is an error.
func (p *pve) waitTask(ctx context.Context, node, upid string) error {
	for delay := 20 * time.Millisecond; ; delay = min(delay*2, time.Second) {
		var status struct {
			Status     string `json:"status"`
			ExitStatus string `json:"exitstatus"`
		}
		if err := p.call(ctx, "GET", "nodes/"+node+"/tasks/"+url.PathEscape(upid)+"/status", nil, &status); err != nil {
			return err
		}
		if status.Status == "stopped" {
			if status.ExitStatus != "OK" {
				return fmt.Errorf("task %s failed: %s", upid, status.ExitStatus)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay): // a remote task: the API has no way to wait on it
		}
	}
}

type nodeItem struct {
	Node   string  `json:"node"`
	Status string  `json:"status"`
	MaxMem float64 `json:"maxmem"`
	Mem    float64 `json:"mem"`
}

type storageItem struct {
	Storage string  `json:"storage"`
	Type    string  `json:"type"`
	Content string  `json:"content"`
	Enabled int     `json:"enabled"`
	Avail   float64 `json:"avail"`
}

func (p *pve) storages(ctx context.Context, node string) ([]storageItem, error) {
	var items []storageItem
	return items, p.call(ctx, "GET", "nodes/"+node+"/storage", nil, &items)
}

// compileSelector compiles a storage selector as the provider does (talos's cel.ParseBooleanExpression over the
// provider's variables): parsed, type-checked, and true or false.
func compileSelector(selector string) (cel.Program, error) {
	env, err := cel.NewEnv(cel.Variable("name", cel.StringType), cel.Variable("node", cel.StringType),
		cel.Variable("storageType", cel.StringType), cel.Variable("availableSpace", cel.UintType))
	if err != nil {
		return nil, err
	}
	ast, issues := env.Compile(selector)
	if issues != nil && issues.Err() != nil {
		return nil, issues.Err()
	}
	if ast.OutputType() != cel.BoolType {
		return nil, fmt.Errorf("expression output type is %s, expected bool", ast.OutputType())
	}
	return env.Program(ast)
}

// checkSelectors is the lab's judge of selectors (--check-selectors): one selector per stdin line (JSON string),
// one JSON verdict per stdout line, {"problem": ""} when the provider would accept it.
func checkSelectors() error {
	lines := bufio.NewScanner(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	for lines.Scan() {
		var selector string
		if err := json.Unmarshal(lines.Bytes(), &selector); err != nil {
			return err
		}
		problem := ""
		if _, err := compileSelector(selector); err != nil {
			problem = err.Error()
		}
		if err := out.Encode(map[string]string{"selector": selector, "problem": problem}); err != nil {
			return err
		}
	}
	return lines.Err()
}

// pickStorage is the first storage of the node, in its order, whose selector is true.
func pickStorage(storages []storageItem, node, selector string) (string, error) {
	program, err := compileSelector(selector)
	if err != nil {
		return "", fmt.Errorf("failed to parse the storage selector %q: %w", selector, err)
	}
	for _, s := range storages {
		out, _, err := program.Eval(map[string]any{"name": s.Storage, "node": node, "storageType": s.Type,
			"availableSpace": uint64(math.Max(s.Avail, 0))})
		if err != nil {
			return "", err
		}
		if matched, ok := out.Value().(bool); ok && matched {
			return s.Storage, nil
		}
	}
	return "", fmt.Errorf("failed to pick the disk: no matches for the condition %q", selector)
}

// ---------------------------------------------------------------------------------------- provisioning

type provisioner struct {
	pve     *pve
	factory string // where the boot ISO is downloaded from (the lab's image factory; nothing fetches it)
}

func (p *provisioner) ProvisionSteps() []provision.Step[*Machine] {
	return []provision.Step[*Machine]{
		provision.NewStep("pickNode", p.pickNode),
		provision.NewStep("uploadISO", p.uploadISO),
		provision.NewStep("syncVM", p.syncVM),
		provision.NewStep("startVM", p.startVM),
	}
}

func data(pctx provision.Context[*Machine]) (providerData, error) {
	var d providerData
	if err := pctx.UnmarshalProviderData(&d); err != nil {
		return d, fmt.Errorf("failed to read the providerdata: %w", err)
	}
	if d.Sockets == 0 {
		d.Sockets = 1
	}
	return d, nil
}

func (p *provisioner) pickNode(ctx context.Context, logger *zap.Logger, pctx provision.Context[*Machine]) error {
	d, err := data(pctx)
	if err != nil {
		return err
	}
	var nodes []nodeItem
	if err = p.pve.call(ctx, "GET", "nodes", nil, &nodes); err != nil {
		return err
	}
	if len(nodes) == 0 {
		return errors.New("no nodes available")
	}
	if d.Node != "" {
		for _, n := range nodes {
			if n.Node == d.Node {
				if n.Status != "online" {
					return fmt.Errorf("specified node %q is not online (status: %s)", d.Node, n.Status)
				}
				setState(pctx.State, "node", n.Node)
				return nil
			}
		}
		return fmt.Errorf("specified node %q not found in cluster", d.Node)
	}
	type candidate struct {
		name      string
		sameSet   int // VMs of this machine request set on the node
		allVMs    int
		freeShare float64
		freeMB    float64
	}
	setID, inSet := pctx.GetMachineRequestSetID()
	candidates := make([]candidate, 0, len(nodes))
	for _, n := range nodes {
		c := candidate{name: n.Node, freeShare: math.Inf(-1), freeMB: math.Inf(-1)} // an offline node: last
		if n.MaxMem > 0 {
			c.freeShare = (n.MaxMem - n.Mem) / n.MaxMem
			c.freeMB = (n.MaxMem - n.Mem) / (1024 * 1024)
		}
		if inSet || d.PlacementStrategy == "fewer-vms" {
			var vms []struct {
				Tags string `json:"tags"`
			}
			// As the provider does: an unreachable node fails the step (and it is tried again).
			if err = p.pve.call(ctx, "GET", "nodes/"+n.Node+"/qemu", nil, &vms); err != nil {
				return fmt.Errorf("failed to list the VMs of node %s: %w", n.Node, err)
			}
			c.allVMs = len(vms)
			for _, vm := range vms {
				for _, tag := range strings.FieldsFunc(vm.Tags, func(r rune) bool { return r == ';' || r == ',' || r == ' ' }) {
					if inSet && tag == machineRequestTag(setID) {
						c.sameSet++
					}
				}
			}
		}
		candidates = append(candidates, c)
	}
	// The provider's strategies, ties by name (components/proxmox/preflight.py's _place predicts the same).
	fits := func(c candidate) bool { return c.freeMB >= float64(d.Memory) }
	less := map[string]func(a, b candidate) bool{
		"spread": func(a, b candidate) bool {
			if a.sameSet != b.sameSet {
				return a.sameSet < b.sameSet
			}
			return a.freeShare > b.freeShare
		},
		"fewer-vms": func(a, b candidate) bool {
			if a.allVMs != b.allVMs {
				return a.allVMs < b.allVMs
			}
			return a.freeShare > b.freeShare
		},
		"round-robin": func(a, b candidate) bool { return a.sameSet < b.sameSet },
		// The least free memory that still holds the VM; when none does, the most.
		"binpack": func(a, b candidate) bool {
			if fits(a) != fits(b) {
				return fits(a)
			}
			if fits(a) {
				return a.freeMB < b.freeMB
			}
			return a.freeMB > b.freeMB
		},
	}
	strategy := d.PlacementStrategy
	if strategy == "" {
		strategy = "spread"
	}
	before, known := less[strategy]
	if !known {
		return fmt.Errorf("unknown placement strategy %q", strategy)
	}
	sort.Slice(candidates, func(i, j int) bool {
		a, b := candidates[i], candidates[j]
		if before(a, b) || before(b, a) {
			return before(a, b)
		}
		return a.name < b.name
	})
	logger.Info("picked node", zap.String("node", candidates[0].name), zap.Int("same_set_vms", candidates[0].sameSet))
	setState(pctx.State, "node", candidates[0].name)
	return nil
}

func (p *provisioner) uploadISO(ctx context.Context, _ *zap.Logger, pctx provision.Context[*Machine]) error {
	node := stateString(pctx.State, "node")
	storages, err := p.pve.storages(ctx, node)
	if err != nil {
		return err
	}
	isoStorage := ""
	for _, s := range storages {
		if s.Enabled != 0 && strings.Contains(","+s.Content+",", ",iso,") {
			isoStorage = s.Storage
			break
		}
	}
	if isoStorage == "" {
		return fmt.Errorf("no storage with iso content on node %s", node)
	}
	// The provider names the ISO after its URL (the schematic and Talos version in it).
	source := fmt.Sprintf("%s/image/%s/%s/nocloud-amd64.iso", p.factory, p.schematic(pctx), pctx.GetTalosVersion())
	sum := sha256.Sum256([]byte(source))
	iso := hex.EncodeToString(sum[:]) + ".iso"
	setState(pctx.State, "iso", isoStorage+":iso/"+iso)
	var content []struct {
		VolID string `json:"volid"`
	}
	if err = p.pve.call(ctx, "GET", "nodes/"+node+"/storage/"+isoStorage+"/content?content=iso", nil, &content); err != nil {
		return err
	}
	for _, c := range content {
		if c.VolID == isoStorage+":iso/"+iso {
			return nil
		}
	}
	var upid string
	if err = p.pve.call(ctx, "POST", "nodes/"+node+"/storage/"+isoStorage+"/download-url",
		url.Values{"content": {"iso"}, "filename": {iso}, "url": {source}}, &upid); err != nil {
		return err
	}
	return p.pve.waitTask(ctx, node, upid)
}

// schematic stands in for the image factory's schematic id: what the request asks the boot image to carry.
func (p *provisioner) schematic(pctx provision.Context[*Machine]) string {
	sum := sha256.Sum256([]byte(strings.Join(pctx.MachineRequestStatus.Metadata().Labels().Keys(), ",")))
	return hex.EncodeToString(sum[:])
}

func diskOptions(storage string, d disk) string {
	opts := fmt.Sprintf("%s:%d", storage, d.DiskSize)
	if d.DiskSSD {
		opts += ",ssd=1"
	}
	if d.DiskDiscard {
		opts += ",discard=on"
	}
	if d.DiskIOThread {
		opts += ",iothread=1"
	}
	if d.DiskCache != "" {
		opts += ",cache=" + d.DiskCache
	}
	if d.DiskAIO != "" {
		opts += ",aio=" + d.DiskAIO
	}
	return opts
}

func nicOptions(bridge string, vlan int, firewall *bool) string {
	if bridge == "" {
		bridge = "vmbr0"
	}
	fw := firewall == nil || *firewall
	opts := fmt.Sprintf("virtio,bridge=%s,firewall=%d", bridge, map[bool]int{false: 0, true: 1}[fw])
	if vlan != 0 {
		opts += fmt.Sprintf(",tag=%d", vlan)
	}
	return opts
}

func (p *provisioner) syncVM(ctx context.Context, logger *zap.Logger, pctx provision.Context[*Machine]) error {
	node := stateString(pctx.State, "node")
	if vmid := stateString(pctx.State, "vmid"); vmid != "" {
		err := p.pve.call(ctx, "GET", "nodes/"+node+"/qemu/"+vmid+"/status/current", nil, nil)
		if err == nil {
			return nil
		}
		if !strings.Contains(err.Error(), "does not exist") {
			return err
		}
	}
	d, err := data(pctx)
	if err != nil {
		return err
	}
	storages, err := p.pve.storages(ctx, node)
	if err != nil {
		return err
	}
	var nextID string
	if err = p.pve.call(ctx, "GET", "cluster/nextid", nil, &nextID); err != nil {
		return err
	}
	uuid := stateString(pctx.State, "uuid")
	if uuid == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		b[6], b[8] = (b[6]&0x0f)|0x40, (b[8]&0x3f)|0x80
		uuid = fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
		setState(pctx.State, "uuid", uuid)
	}
	cpu := d.CPUType
	if cpu == "" {
		cpu = "x86-64-v2-AES"
	}
	form := url.Values{
		"vmid": {nextID}, "name": {pctx.GetRequestID()}, "smbios1": {"uuid=" + uuid},
		"cdrom": {stateString(pctx.State, "iso")}, "cpu": {cpu}, "cores": {strconv.Itoa(d.Cores)},
		"sockets": {strconv.Itoa(d.Sockets)}, "memory": {strconv.Itoa(d.Memory)}, "scsihw": {"virtio-scsi-single"},
		"onboot": {"1"}, "agent": {"enabled=1"}, "net0": {nicOptions(d.NetworkBridge, d.VLAN, d.NetworkFirewall)},
	}
	for i, dk := range append([]disk{d.disk}, d.AdditionalDisks...) {
		storage, err := pickStorage(storages, node, dk.StorageSelector)
		if err != nil {
			return err
		}
		form.Set(fmt.Sprintf("scsi%d", i), diskOptions(storage, dk))
	}
	for i, n := range d.AdditionalNICs {
		form.Set(fmt.Sprintf("net%d", i+1), nicOptions(n.Bridge, n.VLAN, n.Firewall))
	}
	if d.MachineType != "" {
		form.Set("machine", d.MachineType)
	}
	if d.NUMA {
		form.Set("numa", "1")
	}
	if hp := map[string]string{"2MB": "2", "1GB": "1024"}[d.Hugepages]; hp != "" {
		form.Set("hugepages", hp)
	}
	if d.Balloon != nil && !*d.Balloon {
		form.Set("balloon", "0")
	}
	setID, inSet := pctx.GetMachineRequestSetID()
	if inSet {
		form.Set("tags", machineRequestTag(setID))
	}
	pool := d.Pool
	if pool == "" && inSet {
		pool = setID
	}
	if pool != "" {
		if err = p.ensurePool(ctx, pool, inSet && pool == setID); err != nil {
			return err
		}
		form.Set("pool", pool)
		setState(pctx.State, "pool", pool)
	}
	var upid string
	if err = p.pve.call(ctx, "POST", "nodes/"+node+"/qemu", form, &upid); err != nil {
		return err
	}
	setState(pctx.State, "vmid", nextID)
	pctx.SetMachineUUID(uuid)
	logger.Info("creating VM", zap.String("node", node), zap.String("vmid", nextID))
	return p.pve.waitTask(ctx, node, upid)
}

// poolComment marks a pool the provider made itself: only such a pool is removed once it is empty.
const poolComment = "managed by omni-infra-provider-proxmox"

// ensurePool finds the pool among those the token may see (GET /pools) and, if it is missing, creates it only
// when it is the machine request set's own; a pool the class names must exist, as the provider requires.
func (p *provisioner) ensurePool(ctx context.Context, pool string, ownedBySet bool) error {
	var pools []struct {
		PoolID string `json:"poolid"`
	}
	if err := p.pve.call(ctx, "GET", "pools", nil, &pools); err != nil {
		return err
	}
	for _, existing := range pools {
		if existing.PoolID == pool {
			return nil
		}
	}
	if !ownedBySet {
		return fmt.Errorf("proxmox pool %q does not exist; create it in Proxmox or leave \"pool\" empty to use the machine request set id", pool)
	}
	return p.pve.call(ctx, "POST", "pools", url.Values{"poolid": {pool}, "comment": {poolComment}}, nil)
}

// cleanupPool removes a pool the provider made once its last VM is gone; what fails is left for next time.
func (p *provisioner) cleanupPool(ctx context.Context, pool string) {
	var info struct {
		Comment string            `json:"comment"`
		Members []json.RawMessage `json:"members"`
	}
	if err := p.pve.call(ctx, "GET", "pools/"+pool, nil, &info); err != nil || len(info.Members) > 0 || info.Comment != poolComment {
		return
	}
	_ = p.pve.call(ctx, "DELETE", "pools/"+pool, nil, nil)
}

func (p *provisioner) startVM(ctx context.Context, _ *zap.Logger, pctx provision.Context[*Machine]) error {
	node, vmid := stateString(pctx.State, "node"), stateString(pctx.State, "vmid")
	var status struct {
		Status string `json:"status"`
	}
	if err := p.pve.call(ctx, "GET", "nodes/"+node+"/qemu/"+vmid+"/status/current", nil, &status); err != nil {
		return err
	}
	if status.Status == "running" {
		return nil
	}
	var upid string
	if err := p.pve.call(ctx, "POST", "nodes/"+node+"/qemu/"+vmid+"/status/start", url.Values{}, &upid); err != nil {
		return err
	}
	return p.pve.waitTask(ctx, node, upid)
}

func (p *provisioner) Deprovision(ctx context.Context, logger *zap.Logger, machine *Machine, _ *omniinfra.MachineRequest) error {
	node, vmid := stateString(machine, "node"), stateString(machine, "vmid")
	if vmid == "" {
		return nil // nothing was created
	}
	var status struct {
		Status string `json:"status"`
	}
	base := "nodes/" + node + "/qemu/" + vmid
	if err := p.pve.call(ctx, "GET", base+"/status/current", nil, &status); err != nil {
		if strings.Contains(err.Error(), "does not exist") {
			return nil
		}
		return err
	}
	if status.Status == "running" {
		var upid string
		if err := p.pve.call(ctx, "POST", base+"/status/stop", url.Values{}, &upid); err != nil {
			return err
		}
		if err := p.pve.waitTask(ctx, node, upid); err != nil {
			return err
		}
	}
	var upid string
	if err := p.pve.call(ctx, "DELETE", base, nil, &upid); err != nil {
		return err
	}
	logger.Info("deleting VM", zap.String("node", node), zap.String("vmid", vmid))
	if err := p.pve.waitTask(ctx, node, upid); err != nil {
		return err
	}
	if pool := stateString(machine, "pool"); pool != "" {
		p.cleanupPool(ctx, pool)
	}
	return nil
}

// ---------------------------------------------------------------------------------------- main

// healthFromFile is the lab's knob for what the provider reports with its heartbeat: the text of an error
// in the file (a provider that cannot reach Proxmox, say), or nothing.
func healthFromFile(path string) infra.HealthCheckFunc {
	return func(context.Context) error {
		if path == "" {
			return nil
		}
		text, err := os.ReadFile(path)
		if err != nil || strings.TrimSpace(string(text)) == "" {
			return nil
		}
		return errors.New(strings.TrimSpace(string(text)))
	}
}

func run() error {
	endpoint := flag.String("omni-api-endpoint", os.Getenv("OMNI_ENDPOINT"), "the Omni API endpoint")
	key := flag.String("omni-service-account-key", os.Getenv("OMNI_SERVICE_ACCOUNT_KEY"), "the infra provider key")
	flag.StringVar(&providerID, "id", providerID, "the provider id")
	name := flag.String("provider-name", "Proxmox", "the provider's name in Omni")
	description := flag.String("provider-description", "Proxmox infrastructure provider", "its description")
	insecure := flag.Bool("insecure-skip-verify", false, "skip verifying Omni's TLS certificate")
	configFile := flag.String("config-file", "", "the Proxmox config file")
	schemaFile := flag.String("schema-file", "", "the providerdata JSON schema it publishes (the lab's restatement)")
	factory := flag.String("image-factory-url", "https://factory.talos.dev", "where boot ISOs come from")
	healthFile := flag.String("health-file", "", "lab: a file whose text, if any, is reported as the provider's error")
	interval := flag.Duration("health-check-interval", 0, "heartbeat interval (0: the library's, 30s)")
	selectors := flag.Bool("check-selectors", false, "lab: judge storage selectors from stdin as the provider would")
	flag.Parse()
	if *selectors {
		return checkSelectors()
	}
	if *endpoint == "" {
		return errors.New("omni-api-endpoint flag is not set")
	}
	raw, err := os.ReadFile(*configFile)
	if err != nil {
		return fmt.Errorf("failed to read the config file: %w", err)
	}
	var config proxmoxConfig
	if err = yaml.Unmarshal(raw, &config); err != nil {
		return fmt.Errorf("failed to decode the config file: %w", err)
	}
	schema, err := os.ReadFile(*schemaFile)
	if err != nil {
		return fmt.Errorf("failed to read the schema: %w", err)
	}
	api := &pve{base: strings.TrimSuffix(config.Proxmox.URL, "/"),
		auth: "PVEAPIToken=" + config.Proxmox.TokenID + "=" + config.Proxmox.TokenSecret,
		http: &http.Client{Timeout: 30 * time.Second}}
	if config.Proxmox.InsecureSkipVerify {
		return errors.New("the lab's stand-in verifies Proxmox's certificate (SSL_CERT_FILE)")
	}
	provider, err := infra.NewProvider(providerID, &provisioner{pve: api, factory: *factory},
		infra.ProviderConfig{Name: *name, Description: *description, Schema: string(schema)})
	if err != nil {
		return err
	}
	logger, err := zap.NewDevelopment()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	opts := []infra.Option{
		infra.WithOmniEndpoint(*endpoint),
		infra.WithClientOptions(client.WithInsecureSkipTLSVerify(*insecure), client.WithServiceAccount(*key)),
		infra.WithEncodeRequestIDsIntoTokens(),
		infra.WithHealthCheckFunc(healthFromFile(*healthFile)),
	}
	if *interval > 0 {
		opts = append(opts, infra.WithHealthCheckInterval(*interval))
	}
	logger.Info("starting", zap.String("id", providerID))
	return provider.Run(ctx, logger, opts...)
}

func main() {
	if err := run(); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

var _ resource.Resource = (*Machine)(nil)
