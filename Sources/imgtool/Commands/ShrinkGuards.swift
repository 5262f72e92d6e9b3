import ImageOps
import QCow2

/// The shrink guard `resize` uses: the partition table decides what a shrink would cut.
enum ShrinkGuards {
    static let partitions: Operations.ShrinkGuard? = { (image, newSize) throws(ChangeError) in
        PartitionGuard.check(image, newSize: newSize)
    }
}
