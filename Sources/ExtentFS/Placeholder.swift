import IOMapBase
