"""omni-scale: the Omni-managed Talos estate on the Matrix Proxmox cluster, as one Pulumi program.

specs/omni.yaml says what the estate is; Pulumi.<stack>.yaml says where it lives
(endpoints, secrets, the omnictl to use) and whether it is protected.
"""

import pulumi

from components.machine_class import MachineClass
from components.program import load_program_inputs

spec, settings = load_program_inputs()

classes = {
    class_id: MachineClass(class_id, class_spec, protect=settings.protect)
    for class_id, class_spec in spec.machine_classes.items()
}

pulumi.export("machine_classes", {cid: c.provider_data for cid, c in classes.items()})
